/*
 * cmd_send.c - `cloudpacs send`: C-STORE as SCU (PS3.7 9.1.1, the Storage
 * service class of PS3.4 Annex B) of Part 10 files, or of a study kept in
 * the data directory, to another application entity, as DCMTK's storescu
 * does. Each file's data set is streamed from the file after its meta
 * group (net/scu.h). With --tls, over the TLS secure transport connection
 * profile of PS3.15 B.1 (net/tls.h).
 */
#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "core/alloc.h"
#include "core/config.h"
#include "core/limits.h"
#include "index/index.h"
#include "net/pdu.h"
#include "net/scu.h"
#include "net/tls.h"

/* Presentation contexts one association proposes at most (PS3.8 9.3.2.2). */
#define SEND_CONTEXTS_MAX 128

/* Directory levels `send DIR` descends at most. */
#define SEND_DEPTH_MAX 16

typedef struct send_args {
    const char *aet;
    const char *aec;
    const char *host;
    long port;
    const char *study;
    const char *to;
    const char *config;
    char **paths;
    int path_count;
    bool tls;
    tls_config tlsc;
} send_args;

/* The files to send, with what their meta groups say. */
typedef struct send_list {
    char **paths;
    scu_part10_info *info;
    size_t count;
    size_t cap;
} send_list;

void cli_send_usage(FILE *out)
{
    fprintf(out,
        "usage: cloudpacs send [--aet ME] [--aec THEM] HOST PORT FILE|DIR...\n"
        "       cloudpacs send [--config FILE] [--aet ME] --study UID --to AE\n"
        "\n"
        "Sends DICOM Part 10 files (directories are walked) with C-STORE to the\n"
        "peer at HOST PORT; or every instance of a stored study, from the data\n"
        "directory of the configuration, to the AE of its [ae.NAME] section.\n"
        "\n"
        "options:\n"
        "  --aet TITLE    our (calling) AE title (default CLOUDPACS_SEND, or\n"
        "                 [dicom] ae_title with --study)\n"
        "  --aec TITLE    the peer's (called) AE title (default CLOUDPACS)\n"
        "  --config FILE  the configuration (default: $CLOUDPACS_CONFIG)\n"
        "  --tls          use DICOM over TLS (PS3.15 B.1)\n"
        "  --cert FILE    with --tls: our PEM certificate, presented to the peer\n"
        "  --key FILE     with --tls: its PEM private key\n"
        "  --ca FILE      with --tls: the PEM CAs to verify the peer by (default:\n"
        "                 the system trust store)\n"
        "  -h, --help     this text\n"
        "\n"
        "exit status: 0 when every instance was stored; 1 when one failed; 3\n"
        "when a file is not Part 10; 5 when the peer could not be reached.\n");
}

static int parse_args(int argc, char **argv, send_args *a)
{
    int pos = 0;

    a->aet = NULL;
    a->aec = "CLOUDPACS";
    a->config = getenv("CLOUDPACS_CONFIG");
    a->paths = cp_calloc((size_t)argc, sizeof *a->paths);
    if (a->paths == NULL)
        return CLI_EXIT_FAILURE;
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end;

        if (strcmp(argv[i], "--aet") == 0 && v != NULL) {
            a->aet = argv[++i];
        } else if (strcmp(argv[i], "--aec") == 0 && v != NULL) {
            a->aec = argv[++i];
        } else if (strcmp(argv[i], "--study") == 0 && v != NULL) {
            a->study = argv[++i];
        } else if (strcmp(argv[i], "--to") == 0 && v != NULL) {
            a->to = argv[++i];
        } else if (strcmp(argv[i], "--config") == 0 && v != NULL) {
            a->config = argv[++i];
        } else if (strcmp(argv[i], "--tls") == 0) {
            a->tls = true;
        } else if (strcmp(argv[i], "--cert") == 0 && v != NULL) {
            a->tlsc.cert = argv[++i];
        } else if (strcmp(argv[i], "--key") == 0 && v != NULL) {
            a->tlsc.key = argv[++i];
        } else if (strcmp(argv[i], "--ca") == 0 && v != NULL) {
            a->tlsc.ca = argv[++i];
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            cli_send_usage(stdout);
            return -1;
        } else if (argv[i][0] != '-' && pos == 0) {
            a->host = argv[i];
            pos++;
        } else if (argv[i][0] != '-' && pos == 1) {
            a->port = strtol(argv[i], &end, 10);
            if (*end != '\0' || a->port < 1 || a->port > 65535) {
                fprintf(stderr, "cloudpacs send: bad port \"%s\"\n", argv[i]);
                return CLI_EXIT_USAGE;
            }
            pos++;
        } else if (argv[i][0] != '-' && pos >= 2) {
            a->paths[a->path_count++] = argv[i];
        } else {
            fprintf(stderr, "cloudpacs send: bad argument \"%s\"\n", argv[i]);
            return CLI_EXIT_USAGE;
        }
    }
    if ((a->study != NULL) != (a->to != NULL) ||
        (a->study == NULL && (pos < 2 || a->path_count == 0)) ||
        (a->study != NULL && pos != 0)) {
        cli_send_usage(stderr);
        return CLI_EXIT_USAGE;
    }
    return CLI_EXIT_OK;
}

/* --- the files ------------------------------------------------------------ */

static int list_add(send_list *l, const char *path)
{
    scu_part10_info info;
    cp_error err;

    cp_error_clear(&err);
    if (scu_part10_read(path, &info, &err) != CP_OK) {
        fprintf(stderr, "cloudpacs send: %s: %s\n", path, err.detail);
        return CLI_EXIT_DATA;
    }
    if (l->count == l->cap) {
        size_t cap = l->cap == 0 ? 64 : l->cap * 2;
        char **paths = cp_realloc(l->paths, cap * sizeof *paths);
        scu_part10_info *infos;

        if (paths == NULL)
            return CLI_EXIT_FAILURE;
        l->paths = paths;
        infos = cp_realloc(l->info, cap * sizeof *infos);
        if (infos == NULL)
            return CLI_EXIT_FAILURE;
        l->info = infos;
        l->cap = cap;
    }
    l->paths[l->count] = cp_malloc(strlen(path) + 1);
    if (l->paths[l->count] == NULL)
        return CLI_EXIT_FAILURE;
    strcpy(l->paths[l->count], path);
    l->info[l->count++] = info;
    return CLI_EXIT_OK;
}

static int walk(send_list *l, const char *path, int depth)
{
    struct stat sb;
    DIR *d;
    struct dirent *e;
    int rc = CLI_EXIT_OK;

    if (stat(path, &sb) != 0) {
        fprintf(stderr, "cloudpacs send: %s: cannot be read\n", path);
        return CLI_EXIT_DATA;
    }
    if (!S_ISDIR(sb.st_mode))
        return list_add(l, path);
    if (depth >= SEND_DEPTH_MAX)
        return CLI_EXIT_OK;
    d = opendir(path);
    if (d == NULL)
        return CLI_EXIT_DATA;
    while (rc == CLI_EXIT_OK && (e = readdir(d)) != NULL) {
        char child[4096];
        int n;

        if (e->d_name[0] == '.')
            continue;
        n = snprintf(child, sizeof child, "%s/%s", path, e->d_name);
        if (n < 0 || (size_t)n >= sizeof child) {
            fprintf(stderr, "cloudpacs send: %s: path too long\n", path);
            rc = CLI_EXIT_DATA;
            break;
        }
        rc = walk(l, child, depth + 1);
    }
    closedir(d);
    return rc;
}

static void list_free(send_list *l)
{
    for (size_t i = 0; i < l->count; i++)
        cp_free(l->paths[i]);
    cp_free(l->paths);
    cp_free(l->info);
}

/* --- a stored study ------------------------------------------------------- */

typedef struct study_walk {
    send_list *list;
    const char *blobs;
    int rc;
} study_walk;

static cp_status on_instance(void *ctx, const index_row *row)
{
    study_walk *w = ctx;
    char path[4096 + 16 + INDEX_BLOB_KEY_MAX];
    int n = snprintf(path, sizeof path, "%s/%s", w->blobs, row->rec.instance.blob_key);

    if (n < 0 || (size_t)n >= sizeof path)
        return CP_ERR_LIMIT;
    w->rc = list_add(w->list, path);
    return w->rc == CLI_EXIT_OK ? CP_OK : CP_ERR_STOPPED;
}

/* Lists the blobs of the study and finds the destination in the configuration. */
static int list_study(send_args *a, send_list *l, cp_config **cfg_out)
{
    char section[PDU_AE_SIZE + 8], path[4096], blobs[4096 + 8];
    index_term term = { "StudyInstanceUID", a->study };
    index_query_spec spec;
    study_walk w = { l, blobs, CLI_EXIT_OK };
    index_db *idx = NULL;
    cp_config *cfg = NULL;
    const char *dir;
    int64_t port = 0;
    cp_error err;

    cp_error_clear(&err);
    if (a->config != NULL ? cp_config_load(a->config, &cfg, &err) != CP_OK
                          : (cfg = cp_config_create()) == NULL) {
        fprintf(stderr, "cloudpacs send: configuration: %s\n", err.detail);
        return CLI_EXIT_CONFIG;
    }
    *cfg_out = cfg;
    snprintf(section, sizeof section, "ae.%s", a->to);
    a->host = cp_config_get(cfg, section, "host", "");
    if (a->host[0] == '\0' ||
        cp_config_get_int(cfg, section, "port", 104, 1, 65535, &port, &err) != CP_OK) {
        fprintf(stderr, "cloudpacs send: no [%s] with host and port\n", section);
        return CLI_EXIT_CONFIG;
    }
    a->port = (long)port;
    a->aec = cp_config_get(cfg, section, "title", a->to);
    if (a->aet == NULL)
        a->aet = cp_config_get(cfg, "dicom", "ae_title", "CLOUDPACS");

    dir = cp_config_get(cfg, "core", "data_dir", "./cloudpacs-data");
    snprintf(path, sizeof path, "%s/index.sqlite", dir);
    snprintf(blobs, sizeof blobs, "%s/blobs", dir);
    if (index_open_sqlite(path, &idx, &err) != CP_OK) {
        fprintf(stderr, "cloudpacs send: %s: %s\n", path, err.detail);
        return CLI_EXIT_FAILURE;
    }
    memset(&spec, 0, sizeof spec);
    spec.level = INDEX_LEVEL_INSTANCE;
    spec.terms = &term;
    spec.term_count = 1;
    if (index_query(idx, &spec, on_instance, &w, &err) != CP_OK && w.rc == CLI_EXIT_OK) {
        fprintf(stderr, "cloudpacs send: query: %s\n", err.detail);
        w.rc = CLI_EXIT_FAILURE;
    }
    index_destroy(idx);
    if (w.rc == CLI_EXIT_OK && l->count == 0) {
        fprintf(stderr, "cloudpacs send: study not found\n");
        w.rc = CLI_EXIT_FAILURE;
    }
    return w.rc;
}

/* --- sending -------------------------------------------------------------- */

/* Per SOP class the uncompressed pair, and each other syntax as it is. */
static size_t build_proposals(const send_list *l, scu_proposal *props, const char **single)
{
    static const char *const plain[] = { "1.2.840.10008.1.2.1", "1.2.840.10008.1.2" };
    size_t n = 0;

    for (size_t i = 0; i < l->count && n + 2 <= SEND_CONTEXTS_MAX; i++) {
        const scu_part10_info *in = &l->info[i];
        bool have_plain = false, have_ts = strcmp(in->ts, plain[0]) == 0 ||
                                           strcmp(in->ts, plain[1]) == 0;

        for (size_t j = 0; j < n; j++) {
            if (strcmp(props[j].abstract_syntax, in->sop_class) != 0)
                continue;
            if (props[j].transfer_syntaxes == plain)
                have_plain = true;
            else if (strcmp(props[j].transfer_syntaxes[0], in->ts) == 0)
                have_ts = true;
        }
        if (!have_plain)
            props[n++] = (scu_proposal){ in->sop_class, plain, 2 };
        if (!have_ts) {
            single[n] = in->ts;
            props[n] = (scu_proposal){ in->sop_class, &single[n], 1 };
            n++;
        }
    }
    return n;
}

static int send_all(const send_args *a, const send_list *l)
{
    scu_proposal props[SEND_CONTEXTS_MAX];
    const char *single[SEND_CONTEXTS_MAX];
    size_t n = build_proposals(l, props, single);
    size_t sent = 0, failed = 0;
    scu_config cfg;
    scu *u = NULL;
    tls_ctx *tls = NULL;
    cp_error err;

    memset(&cfg, 0, sizeof cfg);
    cfg.calling_ae = a->aet;
    cfg.called_ae = a->aec;
    cfg.host = a->host;
    cfg.port = (uint16_t)a->port;
    cp_error_clear(&err);
    if (a->tls && tls_create(&a->tlsc, false, &tls, &err) != CP_OK) {
        fprintf(stderr, "cloudpacs send: %s\n", err.detail);
        return CLI_EXIT_USAGE;
    }
    if (tls != NULL)
        cfg.wrap = tls_wrap(tls);
    if (scu_connect(&cfg, props, n, &u, &err) != CP_OK) {
        fprintf(stderr, "cloudpacs send: %s port %ld: %s\n", a->host, a->port, err.detail);
        tls_destroy(tls);
        return CLI_EXIT_UNAVAILABLE;
    }
    for (size_t i = 0; i < l->count; i++) {
        uint16_t status = 0;

        cp_error_clear(&err);
        if (scu_store_file(u, l->paths[i], NULL, 0, &status, &err) != CP_OK) {
            fprintf(stderr, "cloudpacs send: %s: %s\n", l->paths[i], err.detail);
            failed++;
            if (err.status == CP_ERR_UNSUPPORTED)
                continue;
            break;
        }
        if (status != 0x0000 && (status & 0xF000) != 0xB000) {
            fprintf(stderr, "cloudpacs send: %s: C-STORE status 0x%04x\n", l->paths[i],
                    status);
            failed++;
            continue;
        }
        sent++;
    }
    if (scu_release(u, &err) != CP_OK && failed == 0)
        failed++;
    scu_destroy(u);
    tls_destroy(tls);
    printf("C-STORE %s port %ld (%s -> %s): %zu sent, %zu failed\n", a->host, a->port,
           a->aet, a->aec, sent, failed);
    return failed == 0 && sent == l->count ? CLI_EXIT_OK : CLI_EXIT_FAILURE;
}

int cli_send_run(int argc, char **argv)
{
    send_args a;
    send_list l = { NULL, NULL, 0, 0 };
    cp_config *cfg = NULL;
    int rc;

    memset(&a, 0, sizeof a);
    rc = parse_args(argc, argv, &a);
    if (rc == -1) {
        rc = CLI_EXIT_OK;
        goto done;
    }
    if (rc != CLI_EXIT_OK)
        goto done;
    if (a.study != NULL) {
        rc = list_study(&a, &l, &cfg);
    } else {
        if (a.aet == NULL)
            a.aet = "CLOUDPACS_SEND";
        for (int i = 0; rc == CLI_EXIT_OK && i < a.path_count; i++)
            rc = walk(&l, a.paths[i], 0);
    }
    if (rc == CLI_EXIT_OK &&
        (!pdu_ae_is_valid(a.aet, strlen(a.aet)) || !pdu_ae_is_valid(a.aec, strlen(a.aec)))) {
        fprintf(stderr, "cloudpacs send: AE titles are 1-16 characters without "
                        "backslash or control characters\n");
        rc = CLI_EXIT_USAGE;
    }
    if (rc == CLI_EXIT_OK)
        rc = send_all(&a, &l);

done:
    list_free(&l);
    cp_free(a.paths);
    cp_config_destroy(cfg);
    return rc;
}
