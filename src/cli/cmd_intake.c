/*
 * cmd_intake.c - `cloudpacs intake status`: what the intake sources took,
 * skipped and refused, their last state and error, and the export rules'
 * positions and unfinished jobs, read from the ledger tables of the data
 * directory's index database (ingest/ledger.h), with or without a server
 * running.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>

#include "cli/cli.h"
#include "core/config.h"
#include "ingest/ingest.h"

void cli_intake_usage(FILE *out)
{
    fprintf(out,
        "usage: cloudpacs intake status [--config FILE] [--data-dir DIR] [--json]\n"
        "\n"
        "Prints, per intake source, the files seen, stored, duplicates, failed\n"
        "and skipped, its state, last error and last success, and per export\n"
        "rule its change-log position and the jobs not yet done.\n"
        "\n"
        "options:\n"
        "  --config FILE     the configuration file ([core] data_dir)\n"
        "  --data-dir DIR    the data directory (CLOUDPACS_DATA_DIR, else\n"
        "                    ./cloudpacs-data)\n"
        "  --json            the status as JSON (as GET /api/intake answers it)\n"
        "\n"
        "exit status: 0; 1 when the index cannot be read; 2 on bad options.\n");
}

static const char *str(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));

    return s != NULL ? s : "-";
}

static long long num(json_t *o, const char *key)
{
    return (long long)json_integer_value(json_object_get(o, key));
}

static void print_text(json_t *root)
{
    size_t i, k;
    json_t *o, *job;

    json_array_foreach(json_object_get(root, "sources"), i, o) {
        printf("source %s: state %s, seen %lld, stored %lld, duplicates %lld, "
               "failed %lld, skipped %lld, last success %s\n", str(o, "name"),
               str(o, "state"), num(o, "seen"), num(o, "stored"), num(o, "duplicates"),
               num(o, "failed"), num(o, "skipped"), str(o, "last_success"));
        if (json_is_string(json_object_get(o, "last_error")))
            printf("  last error: %s\n", str(o, "last_error"));
    }
    json_array_foreach(json_object_get(root, "exports"), i, o) {
        printf("export %s: position %lld, pending %lld, retrying %lld, done %lld\n",
               str(o, "name"), num(o, "position"), num(o, "pending"), num(o, "retrying"),
               num(o, "done"));
        json_array_foreach(json_object_get(o, "jobs"), k, job) {
            /* A report_released rule's job names the released order too. */
            if (json_integer_value(json_object_get(job, "order")) > 0)
                printf("  study %s, order %lld: %s, attempts %lld, next try %s, "
                       "last error %s\n", str(job, "study"), num(job, "order"),
                       str(job, "state"), num(job, "attempts"), str(job, "next_try"),
                       str(job, "last_error"));
            else
                printf("  study %s: %s, attempts %lld, next try %s, last error %s\n",
                       str(job, "study"), str(job, "state"), num(job, "attempts"),
                       str(job, "next_try"), str(job, "last_error"));
        }
    }
}

static int parse(int argc, char **argv, const char **config, const char **data_dir,
                 bool *json)
{
    if (argc < 2 || strcmp(argv[1], "status") != 0) {
        cli_intake_usage(stderr);
        return CLI_EXIT_USAGE;
    }
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) {
            *json = true;
        } else if (strcmp(argv[i], "--config") == 0 && i + 1 < argc) {
            *config = argv[++i];
        } else if (strcmp(argv[i], "--data-dir") == 0 && i + 1 < argc) {
            *data_dir = argv[++i];
        } else {
            fprintf(stderr, "cloudpacs intake: unexpected argument \"%s\"\n", argv[i]);
            return CLI_EXIT_USAGE;
        }
    }
    return CLI_EXIT_OK;
}

int cli_intake_run(int argc, char **argv)
{
    const char *config = NULL, *data_dir = NULL;
    cp_config *cfg = NULL;
    json_t *root = NULL;
    bool json = false;
    char path[4096], text[CP_ERROR_DETAIL_MAX + 64];
    struct stat sb;
    cp_error err;
    int rc;

    cp_error_clear(&err);
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        cli_intake_usage(stdout);
        return CLI_EXIT_OK;
    }
    rc = parse(argc, argv, &config, &data_dir, &json);
    if (rc != CLI_EXIT_OK)
        return rc;
    if (config != NULL ? cp_config_load(config, &cfg, &err) != CP_OK
                       : (cfg = cp_config_create()) == NULL) {
        fprintf(stderr, "cloudpacs intake: %s\n", cp_error_format(&err, text, sizeof text));
        return CLI_EXIT_CONFIG;
    }
    if (data_dir == NULL)
        data_dir = cp_config_get(cfg, "core", "data_dir", "./cloudpacs-data");
    snprintf(path, sizeof path, "%s/index.sqlite", data_dir);
    if (stat(path, &sb) != 0) {
        fprintf(stderr, "cloudpacs intake: no index at %s\n", path);
        rc = CLI_EXIT_FAILURE;
        goto done;
    }
    if (ingest_status_read(data_dir, &root, &err) != CP_OK) {
        fprintf(stderr, "cloudpacs intake: %s\n", cp_error_format(&err, text, sizeof text));
        rc = CLI_EXIT_FAILURE;
        goto done;
    }
    if (json) {
        char *s = json_dumps(root, JSON_INDENT(2));

        if (s != NULL)
            puts(s);
        free(s);
    } else {
        print_text(root);
    }

done:
    json_decref(root);
    cp_config_destroy(cfg);
    return rc;
}
