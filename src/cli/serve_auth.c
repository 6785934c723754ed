/*
 * serve_auth.c - opens and closes what `cloudpacs serve` needs to know who
 * asks: a Redis (the one configured, or a redis-server of its own in the
 * data directory), the directory and the audit trail in the index
 * database, the session service and the REST API (serve_auth.h). The start
 * and the stop of the service are themselves audit records (Application
 * Activity, PS3.15 A.5.3.1).
 */
#include "cli/serve_auth.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "auth/credential.h"
#include "cli/cli.h"
#include "core/log.h"

#define SERVE_AUTH_PATH_MAX 4200

static int auth_fail(const char *what, const cp_error *err)
{
    char text[CP_ERROR_DETAIL_MAX + 64];

    fprintf(stderr, "cloudpacs serve: %s: %s\n", what, cp_error_format(err, text, sizeof text));
    return CLI_EXIT_FAILURE;
}

/* The Application Activity record of a start or a stop. */
static void audit_activity(audit_log *log, const char *type)
{
    audit_record r;

    memset(&r, 0, sizeof r);
    r.event = AUDIT_APPLICATION_ACTIVITY;
    r.action = AUDIT_EXECUTE;
    r.outcome = AUDIT_SUCCESS;
    snprintf(r.type, sizeof r.type, "%s", type);
    snprintf(r.actor, sizeof r.actor, "cloudpacs");
    snprintf(r.object_kind, sizeof r.object_kind, "application");
    if (audit_write(log, &r) != CP_OK)
        cp_log_warn("serve.audit_failed", "type=%s", type);
}

/* The session settings from [auth]; CLI_EXIT_CONFIG when one is out of range. */
static int read_session_config(const cp_config *cfg, session_config *sc)
{
    int64_t idle_min, idle_s, abs_h, lock_after, lock_min;
    cp_error err;

    cp_error_clear(&err);
    if (cp_config_get_int(cfg, "auth", "idle_minutes", 30, 1, 24 * 60, &idle_min, &err)
            != CP_OK ||
        cp_config_get_int(cfg, "auth", "idle_seconds", 0, 0, 24 * 3600, &idle_s, &err)
            != CP_OK ||
        cp_config_get_int(cfg, "auth", "absolute_hours", 12, 1, 24 * 30, &abs_h, &err)
            != CP_OK ||
        cp_config_get_int(cfg, "auth", "lock_after", 5, 1, 1000, &lock_after, &err)
            != CP_OK ||
        cp_config_get_int(cfg, "auth", "lock_minutes", 15, 1, 24 * 60, &lock_min, &err)
            != CP_OK ||
        cp_config_get_bool(cfg, "auth", "mfa_admins", false, &sc->mfa_admins, &err) != CP_OK ||
        cp_config_get_bool(cfg, "auth", "mfa_doctors", false, &sc->mfa_doctors, &err)
            != CP_OK) {
        char text[CP_ERROR_DETAIL_MAX + 64];

        fprintf(stderr, "cloudpacs serve: %s\n", cp_error_format(&err, text, sizeof text));
        return CLI_EXIT_CONFIG;
    }
    sc->idle_s = (unsigned)(idle_s > 0 ? idle_s : idle_min * 60);
    sc->absolute_s = (unsigned)(abs_h * 3600);
    sc->lock_after = (unsigned)lock_after;
    sc->lock_s = (unsigned)(lock_min * 60);
    sc->local_ms = SESSION_LOCAL_MS;
    return CLI_EXIT_OK;
}

/* The configured Redis, or a redis-server of our own in the data directory. */
static int open_redis(serve_auth *a, const cp_config *cfg, const char *data_dir)
{
    const char *url = cp_config_get(cfg, "redis", "url", "");
    kv_config kc;
    cp_error err;

    cp_error_clear(&err);
    if (url[0] == '\0') {
        redisd_config rc;

        memset(&rc, 0, sizeof rc);
        rc.data_dir = data_dir;
        if (redisd_start(&rc, &a->redis, &err) != CP_OK)
            return auth_fail("embedded redis-server", &err);
        url = redisd_url(a->redis);
    }
    memset(&kc, 0, sizeof kc);
    kc.url = url;
    if (kv_create(&kc, &a->kv, &err) != CP_OK) {
        auth_fail("[redis] url", &err);
        return CLI_EXIT_CONFIG;
    }
    return CLI_EXIT_OK;
}

static int open_directory(serve_auth *a, const char *data_dir)
{
    char path[SERVE_AUTH_PATH_MAX];
    cp_error err;

    cp_error_clear(&err);
    if (credential_init() != CP_OK) {
        fprintf(stderr, "cloudpacs serve: the cryptography library did not start\n");
        return CLI_EXIT_FAILURE;
    }
    snprintf(path, sizeof path, "%s/secret.key", data_dir);
    if (credential_key_load(path, a->seal_key, &err) != CP_OK)
        return auth_fail(path, &err);

    snprintf(path, sizeof path, "%s/index.sqlite", data_dir);
    if (directory_open_sqlite(path, &a->dir, &err) != CP_OK)
        return auth_fail("directory", &err);
    directory_set_seal_key(a->dir, a->seal_key);
    if (audit_open_sqlite(path, &a->audit, &err) != CP_OK)
        return auth_fail("audit trail", &err);
    return CLI_EXIT_OK;
}

/* Remote reading: orders, reports, dispatch, live events (serve_consult.h). */
static int open_consult(serve_auth *a, const cp_config *cfg, const char *data_dir)
{
    serve_consult_config cc = { cfg, data_dir, a->kv, a->dir, a->idx, a->arc,
                                a->consult_dispatch };

    return serve_consult_open(&cc, &a->consult);
}

/*
 * The second factor of released reports' links: [film] factor and each
 * [film.<INSTITUTION_CODE>] factor must name one (film_share_factor_parse);
 * CLI_EXIT_CONFIG otherwise.
 */
static int check_film_factors(const cp_config *cfg)
{
    const char *section;

    if (film_share_factor_parse(cp_config_get(cfg, "film", "factor", "birth_date")) == 0) {
        fprintf(stderr, "cloudpacs serve: [film] factor: birth_date or phone_last4\n");
        return CLI_EXIT_CONFIG;
    }
    for (size_t i = 0; (section = cp_config_section_at(cfg, i)) != NULL; i++) {
        if (strncmp(section, "film.", 5) != 0)
            continue;
        if (film_share_factor_parse(cp_config_get(cfg, section, "factor", "birth_date")) == 0) {
            fprintf(stderr, "cloudpacs serve: [%s] factor: birth_date or phone_last4\n",
                    section);
            return CLI_EXIT_CONFIG;
        }
    }
    return CLI_EXIT_OK;
}

/* Cloud film: the share links in the index database, the PDFs in <data_dir>/film. */
static int open_film(serve_auth *a, const cp_config *cfg, const char *data_dir)
{
    char key_path[SERVE_AUTH_PATH_MAX], db_path[SERVE_AUTH_PATH_MAX];
    film_share_config fc;
    int64_t delay_ms;
    cp_error err;

    cp_error_clear(&err);
    if (cp_config_get_int(cfg, "film", "delay_ms", 0, 0, SHARE_DELAY_MAX_MS, &delay_ms, &err)
            != CP_OK) {
        auth_fail("[film] delay_ms", &err);
        return CLI_EXIT_CONFIG;
    }
    if (check_film_factors(cfg) != CLI_EXIT_OK)
        return CLI_EXIT_CONFIG;
    snprintf(a->film_dir, sizeof a->film_dir, "%s/film", data_dir);
    if (mkdir(a->film_dir, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "cloudpacs serve: %s: %s\n", a->film_dir, strerror(errno));
        return CLI_EXIT_FAILURE;
    }
    snprintf(db_path, sizeof db_path, "%s/index.sqlite", data_dir);
    snprintf(key_path, sizeof key_path, "%s/film-share.key", data_dir);
    memset(&fc, 0, sizeof fc);
    fc.db_path = db_path;
    fc.kv = a->kv;
    fc.audit = a->audit;
    fc.key_path = key_path;
    fc.delay_base_ms = (unsigned)delay_ms;
    if (film_share_store_open(&fc, &a->film, &err) != CP_OK)
        return auth_fail("cloud film", &err);
    return CLI_EXIT_OK;
}

static int open_services(serve_auth *a, const cp_config *cfg, session_config *sc)
{
    const char *token = cp_config_get(cfg, "http", "token", "");
    int64_t link_days;
    api_config ac;
    cp_error err;

    cp_error_clear(&err);
    sc->dir = a->dir;
    sc->kv = a->kv;
    sc->service_token = token[0] != '\0' ? token : NULL;
    if (session_service_create(sc, &a->sessions, &err) != CP_OK)
        return auth_fail("sessions", &err);

    memset(&ac, 0, sizeof ac);
    ac.dir = a->dir;
    ac.sessions = a->sessions;
    ac.audit = a->audit;
    ac.idx = a->idx;
    ac.kv = a->kv;
    ac.audit_source = cp_config_get(cfg, "dicom", "ae_title", "CLOUDPACS");
    if (a->consult != NULL)
        serve_consult_fill_api(a->consult, &ac);
    ac.film = a->film;
    ac.film_dir = a->film != NULL ? a->film_dir : NULL;
    ac.film_base_url = cp_config_get(cfg, "film", "base_url", "");
    if (cp_config_get_int(cfg, "film", "link_days", 365, 1, SHARE_TTL_MAX_S / 86400,
                          &link_days, &err) != CP_OK) {
        auth_fail("[film] link_days", &err);
        return CLI_EXIT_CONFIG;
    }
    ac.film_link_days = (int)link_days;
    ac.film_factors = cfg;
    if (cp_config_get_bool(cfg, "http", "secure_cookies", false, &ac.secure_cookies, &err)
            != CP_OK) {
        auth_fail("[http] secure_cookies", &err);
        return CLI_EXIT_CONFIG;
    }
    if (api_create(&ac, &a->api, &err) != CP_OK)
        return auth_fail("REST API", &err);
    return CLI_EXIT_OK;
}

int serve_auth_open(serve_auth *a, const cp_config *cfg, const char *data_dir)
{
    session_config sc;
    int rc;

    memset(&sc, 0, sizeof sc);
    rc = read_session_config(cfg, &sc);
    if (rc == CLI_EXIT_OK)
        rc = open_redis(a, cfg, data_dir);
    if (rc == CLI_EXIT_OK)
        rc = open_directory(a, data_dir);
    if (rc == CLI_EXIT_OK)
        rc = open_consult(a, cfg, data_dir);
    if (rc == CLI_EXIT_OK)
        rc = open_film(a, cfg, data_dir);
    if (rc == CLI_EXIT_OK)
        rc = open_services(a, cfg, &sc);
    if (rc != CLI_EXIT_OK) {
        serve_auth_close(a);
        return rc;
    }

    /* Only whether the URL was configured: it may carry a password. */
    cp_log_info("serve.auth_ready", "redis=%s idle_s=%u absolute_s=%u lock_after=%u "
                "mfa_admins=%s mfa_doctors=%s service_token=%s",
                a->redis != NULL ? "embedded" : "url", sc.idle_s, sc.absolute_s,
                sc.lock_after, sc.mfa_admins ? "true" : "false",
                sc.mfa_doctors ? "true" : "false",
                sc.service_token != NULL ? "set" : "none");
    audit_activity(a->audit, "start");
    return CLI_EXIT_OK;
}

void serve_auth_close(serve_auth *a)
{
    if (a->audit != NULL && a->api != NULL)
        audit_activity(a->audit, "stop");
    api_destroy(a->api);
    serve_consult_close(a->consult);
    a->consult = NULL;
    film_share_store_close(a->film);
    a->film = NULL;
    session_service_destroy(a->sessions);
    audit_close(a->audit);
    directory_close(a->dir);
    kv_destroy(a->kv);
    redisd_stop(a->redis);
    a->api = NULL;
    a->sessions = NULL;
    a->audit = NULL;
    a->dir = NULL;
    a->kv = NULL;
    a->redis = NULL;
    explicit_bzero(a->seal_key, sizeof a->seal_key);
}
