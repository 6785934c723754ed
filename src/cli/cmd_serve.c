/*
 * cmd_serve.c - `cloudpacs serve`: the services of cloudpacs in one
 * process. For now the DICOM service (PS3.8 upper layer, C-ECHO and
 * C-STORE as SCP, through net/scp.h), with every received instance stored
 * through the archive pipeline (archive.h) into the data directory, and
 * C-FIND, C-MOVE and C-GET answered from it (net/qr.h).
 *
 * Configuration (cloudpacs.conf, every key overridable by CLOUDPACS_*):
 *
 *   [core]   data_dir (./cloudpacs-data), log_level
 *   [dicom]  ae_title (CLOUDPACS), port (11112), bind (127.0.0.1),
 *            max_associations, artim_timeout, idle_timeout (seconds),
 *            max_pdu, accept_unknown (true when bind is a loopback
 *            address, false otherwise); DICOM over TLS (PS3.15 B.1,
 *            net/tls.h) on a port of its own beside the plain one:
 *            tls_port (0: off), tls_cert, tls_key, tls_ca (client
 *            certificates required and verified when set), tls_min_version
 *            (1.2), tls_priority (TLS_PRIORITY_DEFAULT)
 *   [ae.NAME] host, port, allow = store,query,retrieve; title (NAME);
 *            institution (a directory code: the AE acts for it)
 *   [dicom]  default_institution (code: what unknown AEs act for when
 *            accept_unknown lets them in), identity_username_only (false):
 *            who an association acts as, and its audit (cli/serve_dimse.h)
 *   [archive] duplicate_policy = keep | overwrite | reject;
 *            study_quiet_seconds (60): a study is announced complete once
 *            no instance arrived for that long (archive/completion.h)
 *   [http]   port (8042), bind (127.0.0.1): the web service, DICOMweb
 *            under /dicom-web (dicomweb/dicomweb.h) and the REST API under
 *            /api (api/api.h, docs/api.md); token: the service token (every
 *            right, for tools and tests); viewer_dir (web/viewer under the
 *            working directory or above the binary, as scripts/viewer.sh
 *            installs it): the OHIF viewer at /viewer/ (http/static.h);
 *            console_dir (web/dist): the admin console at /
 *   [redis] url (none: a redis-server of its own in the data directory),
 *   [auth]   session and lockout settings (cli/serve_auth.h)
 *   [film]   base_url, link_days, delay_ms: cloud film's share links and
 *            report PDFs (cli/serve_auth.h; docs/api.md, "Cloud film"),
 *            the patient's page at /film/ (web/dist/film.html)
 *
 * Every web route but the static files, POST /api/session and /api/health
 * needs a principal (api_authenticate): a session, an API token or the
 * service token; /metrics needs metrics.read (PS3.15 A.5 for the audit
 * trail every access to patient data writes).
 */
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "archive/archive.h"
#include "archive/completion.h"
#include "auth/policy.h"
#include "cli/cli.h"
#include "cli/serve_auth.h"
#include "cli/serve_dimse.h"
#include "cli/serve_ingest.h"
#include "core/alloc.h"
#include "core/config.h"
#include "core/limits.h"
#include "core/log.h"
#include "dicomweb/dicomweb.h"
#include "dicomweb/render.h"
#include "dicom/ts.h"
#include "http/http.h"
#include "http/static.h"
#include "index/index.h"
#include "net/qr.h"
#include "net/scp.h"
#include "net/tls.h"
#include "store/store.h"

#define SERVE_PATH_MAX 4096

typedef struct serve_args {
    const char *config;
    const char *services;
} serve_args;

/* Everything the running service holds, freed by serve_close. */
typedef struct serve_state {
    cp_config *cfg;
    store *st;
    index_db *idx;
    archive *arc;
    scp *server;
    scp *tls_server;                    /* DICOM over TLS, or NULL */
    tls_ctx *tls;
    pthread_t tls_thread;
    bool tls_started;
    pthread_t completion_thread;        /* announces complete studies */
    bool completion_started;
    bool completion_stop;
    pthread_mutex_t completion_lock;
    pthread_cond_t completion_wake;
    int64_t quiet_s;
    qr *qr;                             /* C-FIND, C-MOVE, C-GET (net/qr.h) */
    http_server *web;
    dweb_service *dweb;
    http_static *viewer;                /* the OHIF build at /viewer/ */
    http_static *console;               /* the admin console's build at / */
    serve_auth auth;                    /* Redis, directory, sessions, audit, /api */
    serve_ingest *ingest;               /* SMB and folder intake, exports, or NULL */
    serve_dimse *dimse;                 /* who DICOM associations act as, and audit */
    scp_remote_ae *aes;
    size_t ae_count;
    char data_dir[SERVE_PATH_MAX];
    char blobs[SERVE_PATH_MAX + 16];
} serve_state;

/* The server scp_stop is called on from the signal handler. */
static scp *volatile serve_running;
static scp *volatile serve_running_tls;

/* Set by the signal handler, for a process that runs the web service alone. */
static volatile sig_atomic_t serve_stop_asked;

void cli_serve_usage(FILE *out)
{
    fprintf(out,
        "usage: cloudpacs serve [--config FILE] [--services LIST]\n"
        "\n"
        "Runs the cloudpacs services in this process until SIGINT or SIGTERM:\n"
        "the DICOM service (C-ECHO, C-STORE, C-FIND, C-MOVE, C-GET as SCP) and\n"
        "the web service (DICOMweb, the REST API, the viewer and the console),\n"
        "with sessions in Redis (its own redis-server unless [redis] url is\n"
        "set) and every access to patient data in the audit trail.\n"
        "\n"
        "options:\n"
        "  --config FILE     the configuration file (default: $CLOUDPACS_CONFIG,\n"
        "                    else built-in defaults and CLOUDPACS_* variables)\n"
        "  --services LIST   services to run, comma-separated: dicom, web, ingest,\n"
        "                    dispatch (the reading-order timers; in the default list)\n"
        "                    (default: dicom,web,dispatch; a busy web port is then\n"
        "                    only a warning)\n"
        "  -h, --help        this text\n"
        "\n"
        "configuration keys (each also CLOUDPACS_<SECTION>_<KEY>):\n"
        "  [core]  data_dir (./cloudpacs-data; CLOUDPACS_DATA_DIR), log_level\n"
        "  [dicom] ae_title (CLOUDPACS; CLOUDPACS_AE_TITLE), port (11112;\n"
        "          CLOUDPACS_DICOM_PORT), bind (127.0.0.1), max_associations (%d),\n"
        "          artim_timeout (%d s), idle_timeout (%d s), max_pdu (%u),\n"
        "          accept_unknown (default true when bind is a loopback address,\n"
        "          false otherwise: unknown calling AEs are then rejected)\n"
        "  [ae.NAME] a remote AE: host, port, allow = store,query,retrieve,\n"
        "          title (default NAME), institution (the code of the directory's\n"
        "          institution it acts for: it sees and sends only that one's)\n"
        "  [dicom] default_institution (code: unknown AEs let in by\n"
        "          accept_unknown act for it; none: they are rejected once the\n"
        "          directory holds an institution), identity_username_only\n"
        "          (false: a DICOM user identity needs username and passcode)\n"
        "  [dicom] DICOM over TLS on a port of its own (PS3.15 B.1): tls_port\n"
        "          (0: off), tls_cert, tls_key (PEM), tls_ca (when set, clients\n"
        "          must present a certificate it verifies), tls_min_version\n"
        "          (1.2 or 1.3; 1.2), tls_priority (GnuTLS priorities; default\n"
        "          %s)\n"
        "  [archive] duplicate_policy = keep | overwrite | reject,\n"
        "          study_quiet_seconds (%d): a study is announced complete once\n"
        "          no instance arrived for that long\n"
        "  [http]  port (8042; CLOUDPACS_HTTP_PORT), bind (127.0.0.1), token\n"
        "          (the service token: \"Authorization: Bearer TOKEN\" has every\n"
        "          right), viewer_dir (web/viewer, from scripts/viewer.sh): the\n"
        "          viewer, console_dir (web/dist): the admin console at /,\n"
        "          secure_cookies (false; true behind HTTPS)\n"
        "  [redis] url (CLOUDPACS_REDIS_URL: redis://[:pw@]host:port[/db] or\n"
        "          unix:///path; default: a redis-server of its own on a Unix\n"
        "          socket in <data_dir>/redis)\n"
        "  [auth]  idle_minutes (30), idle_seconds (0: idle_minutes rules),\n"
        "          absolute_hours (12), lock_after (5 failed logins),\n"
        "          lock_minutes (15), mfa_admins, mfa_doctors (false)\n"
        "\n"
        "Every web request but the static files, POST /api/session and\n"
        "/api/health needs \"Authorization: Bearer\" (a session, an API token\n"
        "or the service token) or the session cookie; /metrics needs\n"
        "metrics.read (the service token or a system admin).\n"
        "\n"
        "exit status: 0 after a clean shutdown; 4 when the configuration is\n"
        "wrong; 1 when the data directory or the port cannot be opened.\n",
        SCP_ASSOCIATIONS_DEFAULT, ASSOC_ARTIM_DEFAULT_S, ASSOC_IDLE_DEFAULT_S,
        PDU_RECEIVE_MAX_DEFAULT, TLS_PRIORITY_DEFAULT, COMPLETION_QUIET_DEFAULT_S);
}

static int parse_args(int argc, char **argv, serve_args *args)
{
    memset(args, 0, sizeof *args);
    args->config = getenv("CLOUDPACS_CONFIG");
    args->services = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            args->config = argv[++i];
        } else if (strcmp(argv[i], "--services") == 0 && i + 1 < argc) {
            args->services = argv[++i];
        } else {
            fprintf(stderr, "cloudpacs serve: unexpected argument \"%s\"\n", argv[i]);
            return CLI_EXIT_USAGE;
        }
    }
    return CLI_EXIT_OK;
}

/* "dicom" and "web" exist; the others are accepted with a warning. */
static int check_services(const char *list, bool *dicom, bool *web)
{
    static const char *const later[] = { "dispatch" };
    char copy[256];
    char *save = NULL;

    *dicom = false;
    *web = false;
    snprintf(copy, sizeof copy, "%s", list);
    for (char *tok = strtok_r(copy, ", ", &save); tok != NULL;
         tok = strtok_r(NULL, ", ", &save)) {
        bool known = false;

        if (strcmp(tok, "dicom") == 0 || strcmp(tok, "all") == 0) {
            *dicom = true;
            *web = *web || strcmp(tok, "all") == 0;
            continue;
        }
        if (strcmp(tok, "web") == 0) {
            *web = true;
            continue;
        }
        if (strcmp(tok, "ingest") == 0)
            continue;   /* serve_ingest_wanted reads the list for it */
        if (strcmp(tok, "dispatch") == 0)
            continue;   /* serve_consult_dispatch_wanted reads the list for it */
        for (size_t i = 0; i < sizeof later / sizeof later[0]; i++)
            known = known || strcmp(tok, later[i]) == 0;
        if (!known) {
            fprintf(stderr, "cloudpacs serve: unknown service \"%s\"\n", tok);
            return CLI_EXIT_USAGE;
        }
        cp_log_warn("serve.service_missing", "service=%s detail=\"not in this build\"", tok);
    }
    return CLI_EXIT_OK;
}

/* --- metrics: the DICOM service's events into GET /metrics -------------- */

/* Associations open on both ports, the plain one and TLS. */
static pthread_mutex_t metrics_open_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned metrics_open;

static void metrics_open_add(int delta)
{
    pthread_mutex_lock(&metrics_open_lock);
    metrics_open = (unsigned)((int)metrics_open + delta);
    http_metrics_gauge_set("cloudpacs_dicom_associations_open", NULL, metrics_open);
    pthread_mutex_unlock(&metrics_open_lock);
}

static void on_assoc_event(void *ctx, scp_assoc_result result)
{
    static const char *const labels[] = {
        [SCP_ASSOC_ACCEPTED] = "result=\"accepted\"",
        [SCP_ASSOC_REJECTED] = "result=\"rejected\"",
        [SCP_ASSOC_ABORTED] = "result=\"aborted\"",
    };

    (void)ctx;
    if ((unsigned)result >= sizeof labels / sizeof labels[0])
        return;
    http_metrics_counter_add("cloudpacs_dicom_associations_total", labels[result], 1);
    if (result == SCP_ASSOC_ACCEPTED)
        metrics_open_add(1);
}

static void on_assoc_close(void *ctx)
{
    (void)ctx;
    metrics_open_add(-1);
}

/* The status's class (PS3.7 Annex C): warnings are 0001, Bxxx, 0107 and 0116. */
static const char *status_class(uint16_t status)
{
    if (status == 0x0000)
        return "success";
    if (status == 0x0001 || (status & 0xF000) == 0xB000 || status == 0x0107 ||
        status == 0x0116)
        return "warning";
    if (status == 0xFE00)
        return "cancel";
    return "failure";
}

static void on_dimse_event(void *ctx, uint16_t command_field, uint16_t status)
{
    const char *name = dimse_command_name(command_field);
    size_t n = strlen(name);
    char labels[96];

    (void)ctx;
    if (n > 3 && strcmp(name + n - 3, "-RQ") == 0)
        n -= 3;
    snprintf(labels, sizeof labels, "command=\"%.*s\",status=\"%s\"", (int)n, name,
             status_class(status));
    http_metrics_counter_add("cloudpacs_dicom_operations_total", labels, 1);
}

static void on_bytes_event(void *ctx, uint64_t bytes)
{
    (void)ctx;
    http_metrics_counter_add("cloudpacs_dicom_received_bytes_total", NULL, (double)bytes);
}

/* The series a scrape should see from the start, before any association. */
static void metrics_register(void)
{
    static const char *const results[] = {
        "result=\"accepted\"", "result=\"rejected\"", "result=\"aborted\"",
    };

    for (size_t i = 0; i < sizeof results / sizeof results[0]; i++)
        http_metrics_counter_add("cloudpacs_dicom_associations_total", results[i], 0);
    http_metrics_gauge_set("cloudpacs_dicom_associations_open", NULL, 0);
    http_metrics_counter_add("cloudpacs_dicom_received_bytes_total", NULL, 0);
}

/* One instance through the archive, by where it came from and how it went. */
static void count_outcome(archive_outcome outcome)
{
    char labels[64];

    snprintf(labels, sizeof labels, "source=\"dicom\",outcome=\"%s\"",
             archive_outcome_name(outcome));
    http_metrics_counter_add("cloudpacs_archive_instances_total", labels, 1);
}

/* --- the archive behind the C-STORE consumer ---------------------------- */

static cp_status ingest_begin(void *ctx, const scp_store_info *info, void **op,
                             uint16_t *status)
{
    archive_source_info src;
    archive_ingest *in = NULL;

    memset(&src, 0, sizeof src);
    src.source = info->calling_ae;
    src.institution_id = serve_dimse_institution(info->identity);
    src.transfer_syntax = dcm_ts_lookup(info->transfer_syntax_uid,
                                        strlen(info->transfer_syntax_uid));
    src.sop_class_uid = info->sop_class_uid;
    src.sop_instance_uid = info->sop_instance_uid;
    if (archive_ingest_begin(((serve_state *)ctx)->arc, &src, &in) != CP_OK) {
        *status = 0xA700;
        return CP_ERR_NOMEM;
    }
    *op = in;
    return CP_OK;
}

static cp_status ingest_write(void *op, const void *data, size_t len)
{
    /* Failures are sticky inside the ingest and reported by finish. */
    archive_ingest_write(op, data, len);
    return CP_OK;
}

static uint16_t ingest_finish(void *op, char *comment, size_t size)
{
    archive_result res;

    memset(&res, 0, sizeof res);
    if (archive_ingest_finish(op, &res) != CP_OK) {
        count_outcome(ARCHIVE_REJECTED);
        snprintf(comment, size, "archive failed");
        return 0xA700;
    }
    count_outcome(res.outcome);
    if (res.outcome == ARCHIVE_REJECTED)
        snprintf(comment, size, "%s: %s", archive_reason_name(res.reason), res.detail);
    else
        snprintf(comment, size, "%s", archive_outcome_name(res.outcome));
    return archive_result_dimse_status(&res);
}

static void ingest_abort(void *op)
{
    archive_ingest_abort(op);
}

/* --- configuration ------------------------------------------------------ */

static bool is_loopback(const char *addr)
{
    return strncmp(addr, "127.", 4) == 0 || strcmp(addr, "::1") == 0 ||
           strcasecmp(addr, "localhost") == 0;
}

static int config_error(const cp_error *err)
{
    char text[CP_ERROR_DETAIL_MAX + 64];

    fprintf(stderr, "cloudpacs serve: %s\n", cp_error_format(err, text, sizeof text));
    return CLI_EXIT_CONFIG;
}

/* Reads one [ae.NAME] section into ae. */
static int read_remote_ae(const cp_config *cfg, const char *section, scp_remote_ae *ae)
{
    const char *title = cp_config_get(cfg, section, "title", section + 3);
    const char *allow = cp_config_get(cfg, section, "allow", "");
    int64_t port = 0;
    cp_error err;

    cp_error_clear(&err);
    memset(ae, 0, sizeof *ae);
    if (!pdu_ae_is_valid(title, strlen(title)) || strlen(title) >= sizeof ae->title) {
        fprintf(stderr, "cloudpacs serve: [%s]: AE title \"%s\" is not valid\n", section,
                title);
        return CLI_EXIT_CONFIG;
    }
    snprintf(ae->title, sizeof ae->title, "%s", title);
    snprintf(ae->host, sizeof ae->host, "%s", cp_config_get(cfg, section, "host", ""));
    if (cp_config_get_int(cfg, section, "port", 104, 1, 65535, &port, &err) != CP_OK)
        return config_error(&err);
    ae->port = (uint16_t)port;
    if (scp_parse_allow(allow, &ae->allow) != CP_OK) {
        fprintf(stderr, "cloudpacs serve: [%s]: bad allow list \"%s\"\n", section, allow);
        return CLI_EXIT_CONFIG;
    }
    return CLI_EXIT_OK;
}

static int read_remote_aes(serve_state *s)
{
    const char *name;
    size_t n = 0;

    for (size_t i = 0; (name = cp_config_section_at(s->cfg, i)) != NULL; i++)
        n += strncmp(name, "ae.", 3) == 0 && name[3] != '\0';
    if (n > SCP_REMOTE_AES_MAX) {
        fprintf(stderr, "cloudpacs serve: more than %d [ae.*] sections\n",
                SCP_REMOTE_AES_MAX);
        return CLI_EXIT_CONFIG;
    }
    s->aes = cp_calloc(n == 0 ? 1 : n, sizeof *s->aes);
    if (s->aes == NULL)
        return CLI_EXIT_FAILURE;
    for (size_t i = 0; (name = cp_config_section_at(s->cfg, i)) != NULL; i++) {
        int rc;

        if (strncmp(name, "ae.", 3) != 0 || name[3] == '\0')
            continue;
        rc = read_remote_ae(s->cfg, name, &s->aes[s->ae_count]);
        if (rc != CLI_EXIT_OK)
            return rc;
        cp_log_info("serve.remote_ae", "title=%s host=%s port=%u allow=0x%x",
                    s->aes[s->ae_count].title, s->aes[s->ae_count].host,
                    s->aes[s->ae_count].port, s->aes[s->ae_count].allow);
        s->ae_count++;
    }
    return CLI_EXIT_OK;
}

static int read_dicom_config(serve_state *s, scp_config *sc)
{
    const cp_config *cfg = s->cfg;
    int64_t port, maxa, artim, idle, maxpdu;
    cp_error err;
    const char *ae = cp_config_get(cfg, "dicom", "ae_title", "CLOUDPACS");

    cp_error_clear(&err);
    memset(sc, 0, sizeof *sc);
    if (!pdu_ae_is_valid(ae, strlen(ae))) {
        fprintf(stderr, "cloudpacs serve: [dicom] ae_title \"%s\" is not valid\n", ae);
        return CLI_EXIT_CONFIG;
    }
    snprintf(sc->ae_title, sizeof sc->ae_title, "%s", ae);
    sc->bind = cp_config_get(cfg, "dicom", "bind", "127.0.0.1");
    if (cp_config_get_int(cfg, "dicom", "port", 11112, 0, 65535, &port, &err) != CP_OK ||
        cp_config_get_int(cfg, "dicom", "max_associations", SCP_ASSOCIATIONS_DEFAULT, 1,
                          SCP_ASSOCIATIONS_MAX, &maxa, &err) != CP_OK ||
        cp_config_get_int(cfg, "dicom", "artim_timeout", ASSOC_ARTIM_DEFAULT_S, 1,
                          ASSOC_TIMEOUT_MAX_S, &artim, &err) != CP_OK ||
        cp_config_get_int(cfg, "dicom", "idle_timeout", ASSOC_IDLE_DEFAULT_S, 1,
                          ASSOC_TIMEOUT_MAX_S, &idle, &err) != CP_OK ||
        cp_config_get_int(cfg, "dicom", "max_pdu", PDU_RECEIVE_MAX_DEFAULT, ASSOC_MAX_PDU_MIN,
                          PDU_LENGTH_MAX, &maxpdu, &err) != CP_OK ||
        cp_config_get_bool(cfg, "dicom", "accept_unknown", is_loopback(sc->bind),
                           &sc->accept_unknown, &err) != CP_OK)
        return config_error(&err);
    sc->port = (uint16_t)port;
    sc->max_associations = (unsigned)maxa;
    sc->params.artim_ms = (int)artim * 1000;
    sc->params.idle_ms = (int)idle * 1000;
    sc->params.max_pdu = (uint32_t)maxpdu;
    return read_remote_aes(s);
}

/* --- the data directory ------------------------------------------------- */

static void repair_note(void *ctx, const char *what, const char *sop_uid, const char *key)
{
    (void)ctx;
    cp_log_warn("archive.repair", "action=%s sop_instance_uid=%s key=%s", what,
                sop_uid[0] != '\0' ? sop_uid : "-", key);
}

static bool parse_policy(const char *name, archive_dup_policy *out)
{
    if (strcmp(name, "keep") == 0)
        *out = ARCHIVE_DUP_KEEP;
    else if (strcmp(name, "overwrite") == 0)
        *out = ARCHIVE_DUP_OVERWRITE;
    else if (strcmp(name, "reject") == 0)
        *out = ARCHIVE_DUP_REJECT;
    else
        return false;
    return true;
}

static int open_data(serve_state *s)
{
    archive_config acfg;
    archive_repair_report rep;
    char path[SERVE_PATH_MAX + 32];
    const char *policy = cp_config_get(s->cfg, "archive", "duplicate_policy", "keep");
    cp_error err;

    cp_error_clear(&err);
    memset(&acfg, 0, sizeof acfg);
    if (!parse_policy(policy, &acfg.duplicate_policy)) {
        fprintf(stderr, "cloudpacs serve: unknown duplicate_policy \"%s\"\n", policy);
        return CLI_EXIT_CONFIG;
    }
    snprintf(s->blobs, sizeof s->blobs, "%s/blobs", s->data_dir);
    snprintf(path, sizeof path, "%s/index.sqlite", s->data_dir);
    if (store_open_fs(s->blobs, &s->st, &err) != CP_OK ||
        index_open_sqlite(path, &s->idx, &err) != CP_OK)
        goto fail;
    acfg.default_source.charset.detect = true;
    acfg.fs_root = s->blobs;
    if (archive_create(s->st, s->idx, &acfg, &s->arc, &err) != CP_OK)
        goto fail;

    memset(&rep, 0, sizeof rep);
    if (archive_repair(s->arc, 0, repair_note, NULL, &rep, &err) != CP_OK)
        goto fail;
    cp_log_info("archive.repair", "temporaries=%llu reindexed=%llu orphans=%llu "
                "rows_removed=%llu", (unsigned long long)rep.store.temporaries_removed,
                (unsigned long long)rep.blobs_reindexed,
                (unsigned long long)rep.blobs_orphaned,
                (unsigned long long)rep.rows_missing_blob);
    return CLI_EXIT_OK;

fail:
    {
        char text[CP_ERROR_DETAIL_MAX + 64];

        fprintf(stderr, "cloudpacs serve: %s: %s\n", s->data_dir,
                cp_error_format(&err, text, sizeof text));
    }
    return CLI_EXIT_FAILURE;
}

/* Query/retrieve runs once the archive is open, before any association. */
static void serve_qr(void *ctx, scp_qr_call *call)
{
    serve_state *s = ctx;

    qr_serve(s->qr, call);
}

static int open_qr(serve_state *s, const scp_config *sc)
{
    qr_config qc;

    memset(&qc, 0, sizeof qc);
    qc.idx = s->idx;
    qc.st = s->st;
    qc.ae_title = sc->ae_title;
    qc.params = sc->params;
    serve_dimse_wire_qr(s->dimse, &qc);
    if (qr_create(&qc, &s->qr) != CP_OK)
        return CLI_EXIT_FAILURE;
    return CLI_EXIT_OK;
}

static void serve_close(serve_state *s)
{
    scp_destroy(s->server);
    scp_destroy(s->tls_server);
    serve_dimse_destroy(s->dimse);
    tls_destroy(s->tls);
    qr_destroy(s->qr);
    http_server_destroy(s->web);
    dweb_destroy(s->dweb);
    http_static_destroy(s->viewer);
    http_static_destroy(s->console);
    serve_auth_close(&s->auth);
    archive_destroy(s->arc);
    index_destroy(s->idx);
    store_destroy(s->st);
    cp_free(s->aes);
    cp_config_destroy(s->cfg);
}

/* --- running ------------------------------------------------------------ */

static void on_signal(int sig)
{
    scp *server = serve_running;

    (void)sig;
    serve_stop_asked = 1;
    if (server != NULL)
        scp_stop(server);
    server = serve_running_tls;
    if (server != NULL)
        scp_stop(server);
}

static void install_signals(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
}

static int load_config(const serve_args *args, serve_state *s)
{
    const char *level;
    cp_log_level lvl;
    cp_error err;

    cp_error_clear(&err);
    if (args->config != NULL ? cp_config_load(args->config, &s->cfg, &err) != CP_OK
                             : (s->cfg = cp_config_create()) == NULL) {
        char text[CP_ERROR_DETAIL_MAX + 64];

        fprintf(stderr, "cloudpacs serve: %s: %s\n", args->config != NULL ? args->config : "",
                cp_error_format(&err, text, sizeof text));
        return CLI_EXIT_CONFIG;
    }
    level = cp_config_get(s->cfg, "core", "log_level", NULL);
    if (level != NULL) {
        if (cp_log_parse_level(level, &lvl) != 0) {
            fprintf(stderr, "cloudpacs serve: unknown log_level \"%s\"\n", level);
            return CLI_EXIT_CONFIG;
        }
        cp_log_set_level(lvl);
    }
    snprintf(s->data_dir, sizeof s->data_dir, "%s",
             cp_config_get(s->cfg, "core", "data_dir", "./cloudpacs-data"));
    return CLI_EXIT_OK;
}

/*
 * Binds the port before the data directory is touched: a second server
 * started on the same port fails here, before its start-up repair could
 * remove the temporaries of the one already running.
 */
static int listen_dicom(serve_state *s, scp_config *sc)
{
    cp_error err;

    cp_error_clear(&err);
    sc->aes = s->aes;
    sc->ae_count = s->ae_count;
    sc->store.begin = ingest_begin;
    sc->store.write = ingest_write;
    sc->store.finish = ingest_finish;
    sc->store.abort = ingest_abort;
    sc->store.ctx = s;
    if (serve_dimse_create(sc, &s->dimse) != CP_OK)
        return CLI_EXIT_FAILURE;
    sc->qr.run = serve_qr;
    sc->qr.ctx = s;
    sc->events.on_association = on_assoc_event;
    sc->events.on_close = on_assoc_close;
    sc->events.on_dimse = on_dimse_event;
    sc->events.on_bytes = on_bytes_event;
    metrics_register();
    if (scp_create(sc, &s->server, &err) != CP_OK)
        return config_error(&err);
    if (scp_listen(s->server, &err) != CP_OK) {
        char text[CP_ERROR_DETAIL_MAX + 64];

        fprintf(stderr, "cloudpacs serve: %s\n", cp_error_format(&err, text, sizeof text));
        return CLI_EXIT_FAILURE;
    }
    return CLI_EXIT_OK;
}

/*
 * The TLS port: a second server with the same configuration, whose
 * connections run the TLS handshake (within ARTIM) before the association.
 */
static int listen_tls(serve_state *s, const scp_config *sc)
{
    const cp_config *cfg = s->cfg;
    const char *minv = cp_config_get(cfg, "dicom", "tls_min_version", "1.2");
    tls_config tc;
    scp_config tsc = *sc;
    int64_t port = 0;
    char text[CP_ERROR_DETAIL_MAX + 64];
    cp_error err;

    cp_error_clear(&err);
    if (cp_config_get_int(cfg, "dicom", "tls_port", 0, 0, 65535, &port, &err) != CP_OK)
        return config_error(&err);
    if (port == 0)
        return CLI_EXIT_OK;
    memset(&tc, 0, sizeof tc);
    tc.cert = cp_config_get(cfg, "dicom", "tls_cert", NULL);
    tc.key = cp_config_get(cfg, "dicom", "tls_key", NULL);
    tc.ca = cp_config_get(cfg, "dicom", "tls_ca", NULL);
    tc.priority = cp_config_get(cfg, "dicom", "tls_priority", NULL);
    if (tls_parse_version(minv, &tc.min_version) != CP_OK) {
        fprintf(stderr, "cloudpacs serve: [dicom] tls_min_version \"%s\": 1.2 or 1.3\n",
                minv);
        return CLI_EXIT_CONFIG;
    }
    if (tls_create(&tc, true, &s->tls, &err) != CP_OK)
        return config_error(&err);

    tsc.port = (uint16_t)port;
    tsc.wrap = tls_wrap(s->tls);
    if (scp_create(&tsc, &s->tls_server, &err) != CP_OK)
        return config_error(&err);
    if (scp_listen(s->tls_server, &err) != CP_OK) {
        fprintf(stderr, "cloudpacs serve: TLS: %s\n", cp_error_format(&err, text, sizeof text));
        return CLI_EXIT_FAILURE;
    }
    cp_log_info("serve.tls_configured", "tls_port=%u mutual=%s min_version=%s",
                scp_port(s->tls_server), tc.ca != NULL && tc.ca[0] != '\0' ? "true" : "false",
                minv);
    return CLI_EXIT_OK;
}

static void *tls_thread_main(void *arg)
{
    serve_state *s = arg;
    cp_error err;

    cp_error_clear(&err);
    if (scp_run(s->tls_server, &err) != CP_OK)
        cp_log_error("serve.tls_failed", "detail=\"%s\"", err.detail);
    return NULL;
}

/* --- study completion --------------------------------------------------- */

static int64_t wall_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void on_study_complete(void *ctx, const completion_study *study)
{
    (void)ctx;
    cp_log_info("archive.study_complete", "study_uid=%s instances=%" PRIu32
                " institution=%" PRId64, study->study_uid, study->instances,
                study->institution_id);
}

/*
 * Passes every half quiet time (at least every 0.2 s, at most every 10 s),
 * so a study is announced between one and one and a half quiet times
 * after its last instance. A failed pass is logged and tried again.
 */
static void *completion_main(void *arg)
{
    serve_state *s = arg;
    int64_t period_ms = s->quiet_s * 500;

    if (period_ms < 200)
        period_ms = 200;
    if (period_ms > 10000)
        period_ms = 10000;
    pthread_mutex_lock(&s->completion_lock);
    while (!s->completion_stop) {
        struct timespec until;
        size_t n = 0;
        cp_error err;

        pthread_mutex_unlock(&s->completion_lock);
        cp_error_clear(&err);
        if (completion_pass(s->idx, wall_us(), s->quiet_s * 1000000, on_study_complete, s,
                            &n, &err) != CP_OK)
            cp_log_warn("archive.completion_failed", "detail=\"%s\"", err.detail);

        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += period_ms / 1000;
        until.tv_nsec += (period_ms % 1000) * 1000000;
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000;
        }
        pthread_mutex_lock(&s->completion_lock);
        while (!s->completion_stop &&
               pthread_cond_timedwait(&s->completion_wake, &s->completion_lock, &until) == 0)
            continue;
    }
    pthread_mutex_unlock(&s->completion_lock);
    return NULL;
}

static int start_completion(serve_state *s)
{
    pthread_condattr_t ca;
    cp_error err;

    cp_error_clear(&err);
    if (cp_config_get_int(s->cfg, "archive", "study_quiet_seconds", COMPLETION_QUIET_DEFAULT_S,
                          1, ASSOC_TIMEOUT_MAX_S, &s->quiet_s, &err) != CP_OK)
        return config_error(&err);
    pthread_mutex_init(&s->completion_lock, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->completion_wake, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&s->completion_thread, NULL, completion_main, s) != 0) {
        fprintf(stderr, "cloudpacs serve: cannot start the study completion thread\n");
        pthread_mutex_destroy(&s->completion_lock);
        pthread_cond_destroy(&s->completion_wake);
        return CLI_EXIT_FAILURE;
    }
    s->completion_started = true;
    cp_log_info("serve.completion", "study_quiet_seconds=%" PRId64, s->quiet_s);
    return CLI_EXIT_OK;
}

static void stop_completion(serve_state *s)
{
    if (!s->completion_started)
        return;
    pthread_mutex_lock(&s->completion_lock);
    s->completion_stop = true;
    pthread_cond_signal(&s->completion_wake);
    pthread_mutex_unlock(&s->completion_lock);
    pthread_join(s->completion_thread, NULL);
    pthread_mutex_destroy(&s->completion_lock);
    pthread_cond_destroy(&s->completion_wake);
    s->completion_started = false;
}

static int run_dicom(serve_state *s, const scp_config *sc)
{
    cp_error err;

    cp_error_clear(&err);
    serve_running = s->server;
    install_signals();
    cp_log_info("serve.ready", "dicom_port=%u ae_title=%s bind=%s data_dir=%s "
                "accept_unknown=%s max_associations=%u", scp_port(s->server), sc->ae_title,
                sc->bind, s->data_dir, sc->accept_unknown ? "true" : "false",
                sc->max_associations);
    printf("cloudpacs: DICOM service ready on %s port %u, AE title %s, data in %s\n",
           sc->bind, scp_port(s->server), sc->ae_title, s->data_dir);
    if (s->tls_server != NULL) {
        serve_running_tls = s->tls_server;
        s->tls_started = pthread_create(&s->tls_thread, NULL, tls_thread_main, s) == 0;
        if (!s->tls_started) {
            fprintf(stderr, "cloudpacs serve: cannot start the TLS service\n");
            serve_running_tls = NULL;
            serve_running = NULL;
            return CLI_EXIT_FAILURE;
        }
        cp_log_info("serve.tls_ready", "tls_port=%u", scp_port(s->tls_server));
        printf("cloudpacs: DICOM TLS service ready on %s port %u\n", sc->bind,
               scp_port(s->tls_server));
    }
    fflush(stdout);

    scp_run(s->server, &err);
    serve_running = NULL;
    if (s->tls_started) {
        scp_stop(s->tls_server);
        pthread_join(s->tls_thread, NULL);
        serve_running_tls = NULL;
    }
    cp_log_info("serve.stopped", "dicom_port=%u", scp_port(s->server));
    return CLI_EXIT_OK;
}

/*
 * Serves the OHIF viewer at /viewer/: from [http] viewer_dir, else from the
 * web/viewer that scripts/viewer.sh fills, found by http_static_locate.
 * Without one, /viewer/ answers 404 with how to install it.
 */
static cp_status register_viewer(serve_state *s, cp_error *err)
{
    char found[SERVE_PATH_MAX];
    const char *dir = cp_config_get(s->cfg, "http", "viewer_dir", "");
    http_static_config vc = { "/viewer", NULL, "index.html",
                              "the viewer is not installed: run scripts/viewer.sh" };

    if (dir[0] != '\0')
        vc.root = dir;
    else if (http_static_locate("web/viewer", "index.html", found, sizeof found) == CP_OK)
        vc.root = found;
    cp_log_info("serve.viewer", "dir=\"%s\"", vc.root != NULL ? vc.root : "-");
    return http_static_register(s->web, &vc, &s->viewer, err);
}

/* Unknown paths under /api and /dicom-web: a 404, not the console's page. */
static cp_status no_such_resource(http_request *req, void *ctx)
{
    (void)ctx;
    return http_respond_error(req, 404, "no such resource");
}

/*
 * Serves the admin console (web/, built to web/dist) at /: from [http]
 * console_dir, else found by http_static_locate. Registered last, since
 * its route takes every path the others did not. Without a build, / is
 * left unrouted and one info line says so.
 */
static cp_status register_console(serve_state *s, cp_error *err)
{
    char found[SERVE_PATH_MAX];
    const char *dir = cp_config_get(s->cfg, "http", "console_dir", "");
    http_static_config cc = { "/", NULL, "index.html", "the console is not built" };

    if (dir[0] != '\0')
        cc.root = dir;
    else if (http_static_locate("web/dist", "index.html", found, sizeof found) == CP_OK)
        cc.root = found;
    if (cc.root == NULL) {
        cp_log_info("serve.console", "dir=- detail=\"not built: npm run build in web/\"");
        return CP_OK;
    }
    cp_log_info("serve.console", "dir=\"%s\"", cc.root);
    if (http_server_route(s->web, HTTP_GET, "/api/*", HTTP_ROUTE_PUBLIC, no_such_resource,
                          NULL) != CP_OK ||
        http_server_route(s->web, HTTP_GET, DWEB_PREFIX "/*", HTTP_ROUTE_PUBLIC,
                          no_such_resource, NULL) != CP_OK)
        return cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "cannot register the console's routes");
    return http_static_register(s->web, &cc, &s->console, err);
}

/*
 * GET /metrics, in place of the http layer's own: the counters say how
 * busy each part is, which is for the service token and the system admin
 * (metrics.read), not for every signed-in user.
 */
static cp_status metrics_route(http_request *req, void *ctx)
{
    const principal *p = api_principal(req);
    cp_buf out = CP_BUF_INIT;
    cp_status st;

    (void)ctx;
    if (p == NULL || !policy_allows(p, POLICY_METRICS_READ))
        return http_respond_error(req, 403, "metrics.read is needed");
    st = http_metrics_render(&out);
    if (st == CP_OK)
        st = http_respond_buffer(req, 200, "text/plain; version=0.0.4; charset=utf-8",
                                 out.data != NULL ? (const void *)out.data : "", out.len);
    cp_buf_free(&out);
    return st;
}

/* GET /api/intake (api_intake_status_fn): the ingest service's status, or 503. */
static cp_status intake_status(void *ctx, json_t **out, cp_error *err)
{
    return serve_ingest_status(ctx, out, err);
}

/*
 * Cloud film's pictures (api_film_render_fn): the patient's page asks
 * through its share session; the rendering and its cache are DICOMweb's.
 */
static cp_status film_render(void *ctx, http_request *req, const char *blob_key,
                             const uint8_t *hash, bool thumbnail)
{
    const char *window = http_request_query(req, "window");
    dweb_render_opts o;

    dweb_render_opts_init(&o);
    if (window != NULL && dweb_render_parse_window(window, &o) != CP_OK)
        return http_respond_error(req, 400, "window is center,width");
    if (thumbnail && dweb_render_parse_viewport("128,128", &o) != CP_OK)
        return http_respond_error(req, 500, "the thumbnail size is refused");
    return dweb_render_respond(req, ctx, blob_key, hash, 1, &o);
}

/*
 * Starts the web service once the archive exists. When it was not asked for
 * by name (the default list), a port that cannot be bound only warns, so
 * that several DICOM-only servers can run side by side.
 */
static int start_web(serve_state *s, bool required)
{
    http_config hc;
    dweb_config dc = { .arc = s->arc, .idx = s->idx, .st = s->st, .api = s->auth.api };
    int64_t port = 0;
    char text[CP_ERROR_DETAIL_MAX + 64];
    cp_error err;

    cp_error_clear(&err);
    if (s->auth.consult != NULL) {
        dc.order_gate = serve_consult_order_gate;
        dc.order_gate_ctx = s->auth.consult;
        dc.order_studies = serve_consult_order_studies;
    }
    memset(&hc, 0, sizeof hc);
    hc.bind_address = cp_config_get(s->cfg, "http", "bind", "127.0.0.1");
    /* Every token, the service token too, goes through the session service. */
    hc.auth = api_authenticate;
    hc.auth_ctx = s->auth.api;
    hc.no_metrics_route = true;
    if (cp_config_get_int(s->cfg, "http", "port", 8042, 0, 65535, &port, &err) != CP_OK)
        return config_error(&err);
    hc.port = (uint16_t)port;
    if (http_server_create(&hc, &s->web, &err) != CP_OK)
        return config_error(&err);
    if (http_server_route(s->web, HTTP_GET, "/metrics", 0, metrics_route, s) != CP_OK)
        cp_error_set(&err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                     "cannot register /metrics");
    if (err.status != CP_OK || api_register(s->auth.api, s->web, &err) != CP_OK ||
        dweb_register(s->web, &dc, &s->dweb, &err) != CP_OK ||
        register_viewer(s, &err) != CP_OK || register_console(s, &err) != CP_OK)
        return config_error(&err);
    api_set_film_render(s->auth.api, film_render, s->dweb);
    api_set_film_store(s->auth.api, s->st);
    /* The ingest service started before the web service; NULL: it does not run here. */
    api_set_intake_status(s->auth.api, intake_status, s->ingest);
    if (http_server_start(s->web, &err) != CP_OK) {
        cp_error_format(&err, text, sizeof text);
        http_server_destroy(s->web);
        s->web = NULL;
        if (!required) {
            cp_log_warn("serve.web_unavailable", "port=%u detail=\"%s\"", hc.port, text);
            return CLI_EXIT_OK;
        }
        fprintf(stderr, "cloudpacs serve: web service: %s\n", text);
        return CLI_EXIT_FAILURE;
    }
    cp_log_info("serve.web_ready", "http_port=%u bind=%s console=%s",
                http_server_port(s->web), hc.bind_address, s->console != NULL ? "yes" : "no");
    printf("cloudpacs: web service ready: DICOMweb at http://%s:%u%s, API at /api/%s\n",
           hc.bind_address, http_server_port(s->web), DWEB_PREFIX,
           s->console != NULL ? ", console at /" : "");
    fflush(stdout);
    return CLI_EXIT_OK;
}

/*
 * Without the DICOM service, the process waits here for SIGINT or SIGTERM;
 * they are blocked but while sigsuspend waits, so none is missed between
 * the test of the flag and the wait.
 */
static int run_web_alone(const serve_state *s)
{
    sigset_t block, old;

    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigprocmask(SIG_BLOCK, &block, &old);
    install_signals();
    while (!serve_stop_asked)
        sigsuspend(&old);
    sigprocmask(SIG_SETMASK, &old, NULL);
    cp_log_info("serve.stopped", "http_port=%u", s->web != NULL ? http_server_port(s->web) : 0);
    return CLI_EXIT_OK;
}

int cli_serve_run(int argc, char **argv)
{
    serve_args args;
    serve_state s;
    scp_config sc;
    bool dicom, web, ingest = false;
    int rc;

    memset(&s, 0, sizeof s);
    rc = parse_args(argc, argv, &args);
    if (rc == CLI_EXIT_OK)
        rc = check_services(args.services != NULL ? args.services : "dicom,web", &dicom,
                            &web);
    if (rc != CLI_EXIT_OK)
        return rc;
    rc = load_config(&args, &s);
    if (rc == CLI_EXIT_OK)
        rc = read_dicom_config(&s, &sc);
    if (rc == CLI_EXIT_OK && dicom)
        rc = listen_dicom(&s, &sc);
    if (rc == CLI_EXIT_OK && dicom)
        rc = listen_tls(&s, &sc);
    if (rc == CLI_EXIT_OK)
        rc = open_data(&s);
    if (rc == CLI_EXIT_OK) {
        s.auth.idx = s.idx;
        s.auth.arc = s.arc;
        s.auth.consult_dispatch = serve_consult_dispatch_wanted(args.services);
        rc = serve_auth_open(&s.auth, s.cfg, s.data_dir);
    }
    if (rc == CLI_EXIT_OK && dicom)
        rc = serve_dimse_open(s.dimse, s.cfg, &s.auth, s.idx, sc.accept_unknown);
    if (rc == CLI_EXIT_OK)
        rc = start_completion(&s);
    if (rc == CLI_EXIT_OK && (ingest = serve_ingest_wanted(args.services, s.cfg)))
        rc = serve_ingest_start(s.cfg, s.arc, s.idx, s.st, s.auth.dir, s.data_dir, &s.ingest);
    if (rc == CLI_EXIT_OK && dicom)
        rc = open_qr(&s, &sc);
    if (rc == CLI_EXIT_OK && web)
        rc = start_web(&s, args.services != NULL);
    if (rc == CLI_EXIT_OK && dicom)
        rc = run_dicom(&s, &sc);
    else if (rc == CLI_EXIT_OK && (web || ingest))
        rc = run_web_alone(&s);
    if (s.web != NULL)
        http_server_stop(s.web, 2000);
    serve_ingest_stop(s.ingest);
    stop_completion(&s);
    serve_close(&s);
    return rc;
}
