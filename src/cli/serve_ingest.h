/*
 * serve_ingest.h - the intake and export service inside `cloudpacs serve`
 * (ingest/ingest.h): which service list asks for it, starting it over the
 * server's open archive and stopping it before the archive closes, and
 * its status for the web service.
 *
 * It runs when --services names "ingest" (or "all"), or, with the default
 * list, when the configuration has an [intake.*] or [export.*] section.
 */
#ifndef CP_CLI_SERVE_INGEST_H
#define CP_CLI_SERVE_INGEST_H

#include <stdbool.h>

#include <jansson.h>

#include "archive/archive.h"
#include "auth/directory.h"
#include "core/config.h"
#include "index/index.h"
#include "store/store.h"

typedef struct serve_ingest serve_ingest;

/* Whether to run it: services is the --services list, NULL for the default. */
bool serve_ingest_wanted(const char *services, const cp_config *cfg);

/*
 * Reads the sections and starts the threads. Returns a CLI_EXIT_* code; on
 * failure one line on stderr says why and *out is NULL.
 */
int serve_ingest_start(const cp_config *cfg, archive *arc, index_db *idx, store *st,
                       directory *dir, const char *data_dir, serve_ingest **out);

/* Stops the threads and frees everything. NULL is allowed. */
void serve_ingest_stop(serve_ingest *si);

/*
 * The status JSON (ingest_status_json) for the REST API, e.g. GET
 * /api/intake; the caller owns the result. CP_ERR_UNAVAILABLE when si is
 * NULL (the service is not running).
 */
cp_status serve_ingest_status(serve_ingest *si, json_t **out, cp_error *err);

#endif
