/*
 * serve_ingest.c - starting and stopping the intake and export service in
 * `cloudpacs serve` (serve_ingest.h), with its log lines written here, since
 * the ingest library itself does not log.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/serve_ingest.h"
#include "core/alloc.h"
#include "core/log.h"
#include "ingest/ingest.h"

struct serve_ingest {
    ingest_service *svc;
};

bool serve_ingest_wanted(const char *services, const cp_config *cfg)
{
    char copy[256];
    char *save = NULL;

    if (services == NULL)
        return ingest_configured(cfg);
    snprintf(copy, sizeof copy, "%s", services);
    for (char *tok = strtok_r(copy, ", ", &save); tok != NULL;
         tok = strtok_r(NULL, ", ", &save))
        if (strcmp(tok, "ingest") == 0 || strcmp(tok, "all") == 0)
            return true;
    return false;
}

static void log_line(void *ctx, cp_log_level level, const char *event, const char *detail)
{
    (void)ctx;
    cp_log_write(level, event, "%s", detail);
}

int serve_ingest_start(const cp_config *cfg, archive *arc, index_db *idx, store *st,
                       directory *dir, const char *data_dir, serve_ingest **out)
{
    ingest_env env;
    serve_ingest *si;
    char text[CP_ERROR_DETAIL_MAX + 64];
    cp_error err;

    *out = NULL;
    cp_error_clear(&err);
    si = cp_calloc(1, sizeof *si);
    if (si == NULL)
        return CLI_EXIT_FAILURE;
    memset(&env, 0, sizeof env);
    env.cfg = cfg;
    env.arc = arc;
    env.idx = idx;
    env.st = st;
    env.dir = dir;
    env.data_dir = data_dir;
    env.log = log_line;
    if (ingest_create(&env, &si->svc, &err) != CP_OK) {
        fprintf(stderr, "cloudpacs serve: ingest: %s\n", cp_error_format(&err, text, sizeof text));
        cp_free(si);
        return err.status == CP_ERR_CONFIG ? CLI_EXIT_CONFIG : CLI_EXIT_FAILURE;
    }
    if (ingest_start(si->svc, &err) != CP_OK) {
        fprintf(stderr, "cloudpacs serve: ingest: %s\n", cp_error_format(&err, text, sizeof text));
        ingest_destroy(si->svc);
        cp_free(si);
        return CLI_EXIT_FAILURE;
    }
    cp_log_info("serve.ingest_ready", "sources=%zu exports=%zu",
                ingest_source_count(si->svc), ingest_rule_count(si->svc));
    printf("cloudpacs: ingest service ready: %zu intake sources, %zu export rules\n",
           ingest_source_count(si->svc), ingest_rule_count(si->svc));
    fflush(stdout);
    *out = si;
    return CLI_EXIT_OK;
}

void serve_ingest_stop(serve_ingest *si)
{
    if (si == NULL)
        return;
    ingest_destroy(si->svc);
    cp_free(si);
}

cp_status serve_ingest_status(serve_ingest *si, json_t **out, cp_error *err)
{
    *out = NULL;
    if (si == NULL)
        return cp_error_set(err, CP_ERR_UNAVAILABLE, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "the ingest service is not running");
    return ingest_status_json(si->svc, out, err);
}
