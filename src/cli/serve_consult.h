/*
 * serve_consult.h - remote reading inside `cloudpacs serve`: the order
 * store and the report store in the index database, the dispatch engine
 * (its timers run here when the "dispatch" service does), the live event
 * hub, the DICOMweb visibility that an order gives, and automatic orders.
 *
 * Configuration (each key also CLOUDPACS_<SECTION>_<KEY>):
 *   [dispatch]         the engine's rules (consult/dispatch.h,
 *                      dispatch_rules_from_config)
 *   [order_rule.NAME]  institution = CODE, modality = CR,DX (empty: any),
 *                      priority = routine | urgent, body_part (optional):
 *                      an order is made for every study of that institution
 *                      that becomes complete (archive/completion.h) and has
 *                      no open order yet.
 * The report signing key is <data_dir>/report-signing.key.
 */
#ifndef CP_CLI_SERVE_CONSULT_H
#define CP_CLI_SERVE_CONSULT_H

#include <stdbool.h>

#include "api/api.h"
#include "archive/archive.h"
#include "auth/directory.h"
#include "auth/policy.h"
#include "core/config.h"
#include "index/index.h"
#include "kv/kv.h"

typedef struct serve_consult serve_consult;

/* Whether to run the dispatch timers: services is the --services list, NULL the default. */
bool serve_consult_dispatch_wanted(const char *services);

/* What serve_consult_open is given; none owned. */
typedef struct serve_consult_config {
    const cp_config *cfg;
    const char *data_dir;
    kv *kv;
    directory *dir;
    index_db *idx;
    archive *arc;                       /* NULL: released reports get no SR */
    bool run_dispatch;                  /* the timers and the automatic orders */
} serve_consult_config;

/*
 * Opens everything and starts the threads. Returns a CLI_EXIT_* code; on
 * failure what was opened is closed again and one line on stderr says why.
 */
int serve_consult_open(const serve_consult_config *cc, serve_consult **out);

/* Stops the threads and closes. Call after the web server stopped. NULL is fine. */
void serve_consult_close(serve_consult *c);

/* Fills the remote-reading fields of the REST API's configuration. */
void serve_consult_fill_api(serve_consult *c, api_config *ac);

/* A dweb_config.order_gate with the serve_consult as ctx (dicomweb/dicomweb.h). */
int serve_consult_order_gate(void *ctx, const principal *p, const char *study_uid);

/* A dweb_config.order_studies with the serve_consult as ctx (dicomweb/dicomweb.h). */
size_t serve_consult_order_studies(void *ctx, const principal *p,
                                   char (*uids)[INDEX_UID_MAX + 1], size_t cap);

#endif
