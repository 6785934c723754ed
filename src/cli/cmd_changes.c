/*
 * cmd_changes.c - `cloudpacs changes`: reads the index's change log
 * (index/index.h): instances stored, replaced and deleted, and studies
 * announced complete, oldest first from a position, as text or JSON. A
 * reader keeps the seq of the last change it handled and asks again with
 * --since, as the services that follow the archive do.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli/cli.h"
#include "core/config.h"
#include "index/index.h"

#define CHANGES_PATH_MAX 4096

typedef struct changes_args {
    const char *config;
    long long since;
    long long limit;
    bool json;
} changes_args;

typedef struct changes_out {
    bool json;
    size_t count;
} changes_out;

void cli_changes_usage(FILE *out)
{
    fprintf(out,
        "usage: cloudpacs changes [--config FILE] [--since SEQ] [--limit N] [--json]\n"
        "\n"
        "Lists the archive's change log from the data directory of the\n"
        "configuration: one line per change, oldest first, with its sequence\n"
        "number, time, kind (stored, replaced, deleted, study_complete),\n"
        "institution and UIDs.\n"
        "\n"
        "options:\n"
        "  --config FILE  the configuration (default: $CLOUDPACS_CONFIG)\n"
        "  --since SEQ    only the changes after SEQ (default 0: all)\n"
        "  --limit N      at most N changes (default 0: no limit)\n"
        "  --json         a JSON array of objects instead of text\n"
        "  -h, --help     this text\n"
        "\n"
        "exit status: 0 on success; 1 when the index cannot be read; 2 on bad\n"
        "options; 4 when the configuration is wrong.\n");
}

static bool parse_count(const char *s, long long *out)
{
    char *end;
    long long v = strtoll(s, &end, 10);

    if (*s == '\0' || *end != '\0' || v < 0)
        return false;
    *out = v;
    return true;
}

static int parse_args(int argc, char **argv, changes_args *a)
{
    a->config = getenv("CLOUDPACS_CONFIG");
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;

        if (strcmp(argv[i], "--config") == 0 && v != NULL) {
            a->config = argv[++i];
        } else if (strcmp(argv[i], "--since") == 0 && v != NULL &&
                   parse_count(v, &a->since)) {
            i++;
        } else if (strcmp(argv[i], "--limit") == 0 && v != NULL &&
                   parse_count(v, &a->limit)) {
            i++;
        } else if (strcmp(argv[i], "--json") == 0) {
            a->json = true;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            cli_changes_usage(stdout);
            return -1;
        } else {
            fprintf(stderr, "cloudpacs changes: bad argument \"%s\"\n", argv[i]);
            return CLI_EXIT_USAGE;
        }
    }
    return CLI_EXIT_OK;
}

static const char *kind_name(index_change_kind kind)
{
    switch (kind) {
    case INDEX_CHANGE_STORED:
        return "stored";
    case INDEX_CHANGE_REPLACED:
        return "replaced";
    case INDEX_CHANGE_DELETED:
        return "deleted";
    case INDEX_CHANGE_STUDY_COMPLETE:
        return "study_complete";
    }
    return "unknown";
}

/* "2026-12-03T17:40:01.123456Z" */
static void format_time(int64_t us, char *out, size_t size)
{
    time_t sec = (time_t)(us / 1000000);
    struct tm tm;

    if (gmtime_r(&sec, &tm) == NULL) {
        snprintf(out, size, "-");
        return;
    }
    snprintf(out, size, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             (int)(us % 1000000));
}

/* A JSON string; UIDs are plain ASCII but the index is not trusted blindly. */
static void put_json_string(const char *s)
{
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if (*p < 0x20)
            printf("\\u%04x", *p);
        else
            putchar(*p);
    }
    putchar('"');
}

static cp_status print_change(void *ctx, const index_change *ch)
{
    changes_out *o = ctx;
    char when[96];

    format_time(ch->time_us, when, sizeof when);
    if (!o->json) {
        printf("%lld %s %s institution=%lld study_uid=%s series_uid=%s sop_uid=%s\n",
               (long long)ch->seq, when, kind_name(ch->kind), (long long)ch->institution_id,
               ch->study_uid[0] != '\0' ? ch->study_uid : "-",
               ch->series_uid[0] != '\0' ? ch->series_uid : "-",
               ch->sop_uid[0] != '\0' ? ch->sop_uid : "-");
        o->count++;
        return CP_OK;
    }
    printf("%s\n  {\"seq\": %lld, \"time\": \"%s\", \"time_us\": %lld, \"kind\": \"%s\", "
           "\"institution\": %lld, \"study_uid\": ", o->count == 0 ? "" : ",",
           (long long)ch->seq, when, (long long)ch->time_us, kind_name(ch->kind),
           (long long)ch->institution_id);
    put_json_string(ch->study_uid);
    printf(", \"series_uid\": ");
    put_json_string(ch->series_uid);
    printf(", \"sop_uid\": ");
    put_json_string(ch->sop_uid);
    printf("}");
    o->count++;
    return CP_OK;
}

/* Opens the index of the configuration's data directory, never creating one. */
static int open_index(const changes_args *a, index_db **idx)
{
    char path[CHANGES_PATH_MAX + 32];
    cp_config *cfg = NULL;
    struct stat sb;
    cp_error err;
    int rc = CLI_EXIT_OK;

    cp_error_clear(&err);
    if (a->config != NULL ? cp_config_load(a->config, &cfg, &err) != CP_OK
                          : (cfg = cp_config_create()) == NULL) {
        fprintf(stderr, "cloudpacs changes: configuration: %s\n", err.detail);
        return CLI_EXIT_CONFIG;
    }
    snprintf(path, sizeof path, "%s/index.sqlite",
             cp_config_get(cfg, "core", "data_dir", "./cloudpacs-data"));
    if (stat(path, &sb) != 0) {
        fprintf(stderr, "cloudpacs changes: %s: no index there\n", path);
        rc = CLI_EXIT_FAILURE;
    } else if (index_open_sqlite(path, idx, &err) != CP_OK) {
        fprintf(stderr, "cloudpacs changes: %s: %s\n", path, err.detail);
        rc = CLI_EXIT_FAILURE;
    }
    cp_config_destroy(cfg);
    return rc;
}

int cli_changes_run(int argc, char **argv)
{
    changes_args a;
    changes_out o = { false, 0 };
    index_db *idx = NULL;
    cp_error err;
    int rc;

    memset(&a, 0, sizeof a);
    rc = parse_args(argc, argv, &a);
    if (rc == -1)
        return CLI_EXIT_OK;
    if (rc != CLI_EXIT_OK)
        return rc;
    rc = open_index(&a, &idx);
    if (rc != CLI_EXIT_OK)
        return rc;

    o.json = a.json;
    if (o.json)
        printf("[");
    cp_error_clear(&err);
    if (index_changes_since(idx, (int64_t)a.since, (size_t)a.limit, print_change, &o,
                            &err) != CP_OK) {
        fprintf(stderr, "cloudpacs changes: %s\n", err.detail);
        rc = CLI_EXIT_FAILURE;
    }
    if (o.json)
        printf("%s]\n", o.count == 0 ? "" : "\n");
    index_destroy(idx);
    return rc;
}
