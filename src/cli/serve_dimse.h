/*
 * serve_dimse.h - who a DICOM association acts as, and the audit trail of
 * what it does, for `cloudpacs serve`: the association authoriser of
 * net/scp.h, a C-STORE consumer wrapped around the archive's, and the
 * query/retrieve hooks of net/qr.h, all over serve_auth (directory,
 * sessions, audit trail) and the rules of auth/policy.h.
 *
 * Who an association is (decided once, at negotiation, PS3.8 9.3.2):
 *   - with a User Identity sub-item (PS3.7 D.3.3.7): type 2 (username and
 *     passcode) is checked by session_resolve_password and the association
 *     then has that user's rights; type 1 (username only) is refused unless
 *     [dicom] identity_username_only = true, and then names the user in the
 *     audit trail while the calling AE's rights apply; other types are
 *     refused. Redis away: a transient rejection.
 *   - else the calling AE: one of the directory (directory_ae_get) or an
 *     [ae.NAME] with `institution = CODE` acts as a technician of that
 *     institution's subtree; any other, when accept_unknown allows it,
 *     as a technician of [dicom] default_institution (CODE), and is
 *     rejected (calling AE not recognised) when none is configured.
 * Until the directory holds an institution, the service runs open, as it
 * did before authorisation existed (AE rules only), and still audits.
 *
 * Audit (PS3.15 A.5.3): per association and study, one DICOM Instances
 * Transferred record (action C, type "c-store") when the association
 * ends; one Query record per C-FIND ("c-find", the query keys as text, no
 * patient names); one DICOM Instances Transferred record per study of a
 * C-MOVE or C-GET ("c-move", "c-get", the destination in the detail).
 */
#ifndef CP_CLI_SERVE_DIMSE_H
#define CP_CLI_SERVE_DIMSE_H

#include <stdbool.h>
#include <stdint.h>

#include "cli/serve_auth.h"
#include "core/config.h"
#include "core/status.h"
#include "index/index.h"
#include "net/qr.h"
#include "net/scp.h"

typedef struct serve_dimse serve_dimse;

/*
 * Before the DICOM server is created from sc: makes the object and sets
 * sc->authoriser and sc->store (wrapping the consumer already there, which
 * is then called as before). Nothing is decided until serve_dimse_open.
 */
cp_status serve_dimse_create(scp_config *sc, serve_dimse **out);

/*
 * Once the index and serve_auth are open, before associations are served:
 * reads [dicom] default_institution and identity_username_only and every
 * [ae.NAME] institution. Returns a CLI_EXIT_* code (CONFIG for an unknown
 * institution code, with one line on stderr).
 */
int serve_dimse_open(serve_dimse *d, const cp_config *cfg, serve_auth *auth, index_db *idx,
                     bool accept_unknown);

/* Sets qc->auth: the scope, row visibility and audit of C-FIND/MOVE/GET. */
void serve_dimse_wire_qr(serve_dimse *d, qr_config *qc);

/*
 * The institution an association's instances are stored under
 * (archive_source_info.institution_id), from scp_store_info.identity;
 * 0 when none is known (the archive's source settings then apply).
 */
int64_t serve_dimse_institution(const void *identity);

/* After the servers are destroyed. NULL is fine. */
void serve_dimse_destroy(serve_dimse *d);

#endif
