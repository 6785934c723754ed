/*
 * serve_auth.h - what `cloudpacs serve` holds for identity: its Redis (the
 * embedded redis-server when no URL is configured, kv/redisd.h), the
 * directory, the audit trail, the session service and the REST API, opened
 * together from the configuration and closed together.
 *
 * Configuration (each key also CLOUDPACS_<SECTION>_<KEY>):
 *   [redis] url (CLOUDPACS_REDIS_URL; none: the embedded server)
 *   [auth]  idle_minutes (30), absolute_hours (12), lock_after (5),
 *           lock_minutes (15), mfa_admins, mfa_doctors (false)
 *   [http]  token: the service token (every right; for tools and tests)
 * Added for tests: [auth] idle_seconds, which wins over idle_minutes when
 * set, so that idle expiry can be tested without waiting minutes.
 */
#ifndef CP_CLI_SERVE_AUTH_H
#define CP_CLI_SERVE_AUTH_H

#include <stdint.h>

#include "api/api.h"
#include "auth/audit.h"
#include "auth/directory.h"
#include "auth/session.h"
#include "cli/serve_consult.h"
#include "core/config.h"
#include "index/index.h"
#include "kv/kv.h"
#include "kv/redisd.h"

typedef struct serve_auth {
    redisd *redis;                      /* NULL when [redis] url is set */
    kv *kv;
    directory *dir;
    audit_log *audit;
    session_service *sessions;
    api_service *api;
    /*
     * Added: the caller's open index (not owned), which /api/health reports
     * on; set it before serve_auth_open (NULL: health leaves it out).
     */
    index_db *idx;
    uint8_t seal_key[32];               /* added: wiped by serve_auth_close */
    /*
     * Added: remote reading (cli/serve_consult.h), opened between the
     * directory and the REST API and closed right after the API. Set arc
     * (the caller's archive, not owned: where report SRs go) and
     * consult_dispatch (run the dispatch timers here) before serve_auth_open.
     */
    archive *arc;
    bool consult_dispatch;
    serve_consult *consult;
    /*
     * Added: cloud film (film/share.h): the share links, opened with the
     * REST API and closed after it; report PDFs go to <data_dir>/film.
     * [film] base_url (the QR code's; default: the request's), link_days
     * (365), delay_ms (the first wait after wrong answers; tests shorten it).
     */
    film_share_store *film;
    char film_dir[4200];
} serve_auth;

/*
 * Opens everything for data_dir (database <data_dir>/index.sqlite, seal key
 * <data_dir>/secret.key). Returns a CLI_EXIT_* code; on failure what was
 * opened is closed again and one line on stderr says why.
 */
int serve_auth_open(serve_auth *a, const cp_config *cfg, const char *data_dir);

/* Closes in reverse order (the audit trail flushed). Safe on a zeroed struct. */
void serve_auth_close(serve_auth *a);

#endif
