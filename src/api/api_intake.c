/*
 * api_intake.c - GET /api/intake (api_intake.h): the status JSON of every
 * intake source and export rule, asked of the hook the process set. It
 * holds counters, states and errors about shares, never patient data, so
 * reading it is not audited.
 */
#include "api/api_intake.h"

#include "api/api_internal.h"
#include "core/log.h"

void api_set_intake_status(api_service *a, api_intake_status_fn fn, void *ctx)
{
    a->intake_status = fn;
    a->intake_status_ctx = ctx;
}

static cp_status respond_not_running(http_request *req, const char *why)
{
    http_response_header(req, "Retry-After", "30");
    return api_respond_error(req, 503, "ingest_not_running", why);
}

static cp_status handle_intake(http_request *req, void *ctx)
{
    api_service *a = ctx;
    json_t *status = NULL;
    cp_error err;
    cp_status st;

    if (!policy_allows(api_principal(req), POLICY_METRICS_READ))
        return api_respond_forbidden(req);
    if (!a->intake_status)
        return respond_not_running(req, "the intake and export service is not running in "
                                        "this process");
    cp_error_clear(&err);
    st = a->intake_status(a->intake_status_ctx, &status, &err);
    if (st == CP_ERR_UNAVAILABLE)
        return respond_not_running(req, err.detail[0] ? err.detail
                                   : "the intake and export service is not running");
    if (st != CP_OK) {
        cp_log_warn("api.intake_status", "detail=\"%s\"", err.detail);
        return api_respond_status(req, st, &err);
    }
    http_response_header(req, "Cache-Control", "no-store");
    return api_respond_json(req, 200, status);
}

cp_status api_intake_register(api_service *a, http_server *s)
{
    return http_server_route(s, HTTP_GET, "/api/intake", 0, handle_intake, a);
}
