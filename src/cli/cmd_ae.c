/*
 * cmd_ae.c - `cloudpacs ae`: the DICOM application entities of the
 * directory (auth/directory.h), each sending for one institution: add,
 * list, remove. The AE title is the calling AE title of PS3.8 9.3.2; host
 * and port are where C-MOVE sends to it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cmd_identity.h"
#include "core/alloc.h"
#include "core/limits.h"

/* What an AE may do when --allow is not given: send, the least it needs. */
#define AE_ALLOW_DEFAULT "store"

void cli_ae_usage(FILE *out)
{
    fprintf(out,
        "usage: cloudpacs ae add TITLE --institution CODE [--host HOST] [--port PORT]\n"
        "                        [--allow store,query,retrieve] [--replace]\n"
        "       cloudpacs ae list [--json]\n"
        "       cloudpacs ae remove TITLE\n"
        "\n"
        "Manages the DICOM application entities the DICOM service knows, and the\n"
        "institution each sends for. TITLE is 1 to 16 characters (no backslash).\n"
        "--host and --port say where C-MOVE sends to it (default: none); --allow\n"
        "what it may do (default: " AE_ALLOW_DEFAULT "). An existing title is refused\n"
        "unless --replace is given.\n"
        "\n"
        "common options:\n"
        "  --data-dir DIR   the data directory (default: [core] data_dir,\n"
        "                   CLOUDPACS_DATA_DIR, else ./cloudpacs-data)\n"
        "  --config FILE    the configuration file\n"
        "  -h, --help       this text\n"
        "\n"
        "Changes are recorded in the audit trail as made by cli:<login>.\n"
        "exit status: 0 done; 1 failed (not found, already exists);\n"
        "2 bad command line; 4 bad configuration.\n");
}

static int ae_failed(cli_identity *c, const char *title, cp_status st, const cp_error *err)
{
    char what[48];

    snprintf(what, sizeof what, "AE \"%.16s\"", title);
    return cli_identity_fail(c, st, st == CP_ERR_NOT_FOUND ? NULL : err, what);
}

static int ae_add(cli_identity *c, int argc, char **argv)
{
    enum { O_INST, O_HOST, O_PORT, O_ALLOW, O_REPLACE, O_COUNT };
    cli_identity_opt opts[O_COUNT] = {
        { "--institution", true, NULL, false }, { "--host", true, NULL, false },
        { "--port", true, NULL, false }, { "--allow", true, NULL, false },
        { "--replace", false, NULL, false },
    };
    directory_institution inst;
    directory_ae ae, old;
    bool existed;
    cp_error err;
    cp_status st;
    int rc;

    rc = cli_identity_parse(c, argc, argv, opts, O_COUNT, 1, 1);
    if (rc != CLI_EXIT_OK || c->help)
        return rc;
    if (!opts[O_INST].seen) {
        fprintf(stderr, "cloudpacs ae add: --institution is needed\n");
        return CLI_EXIT_USAGE;
    }
    memset(&ae, 0, sizeof ae);
    if (strlen(c->pos[0]) >= sizeof ae.title ||
        (opts[O_HOST].seen && strlen(opts[O_HOST].value) >= sizeof ae.host) ||
        (opts[O_ALLOW].seen && strlen(opts[O_ALLOW].value) >= sizeof ae.allow)) {
        fprintf(stderr, "cloudpacs ae add: title, host or allow list too long\n");
        return CLI_EXIT_USAGE;
    }
    snprintf(ae.title, sizeof ae.title, "%s", c->pos[0]);
    snprintf(ae.host, sizeof ae.host, "%s", opts[O_HOST].seen ? opts[O_HOST].value : "");
    snprintf(ae.allow, sizeof ae.allow, "%s",
             opts[O_ALLOW].seen ? opts[O_ALLOW].value : AE_ALLOW_DEFAULT);
    if (opts[O_PORT].seen) {
        char *end;
        long port;

        errno = 0;
        port = strtol(opts[O_PORT].value, &end, 10);
        if (errno != 0 || end == opts[O_PORT].value || *end != '\0' || port < 1 ||
            port > 65535) {
            fprintf(stderr, "cloudpacs ae add: --port is 1 to 65535\n");
            return CLI_EXIT_USAGE;
        }
        ae.port = (int)port;
    }

    if ((rc = cli_identity_open(c, false)) != CLI_EXIT_OK)
        return rc;
    if ((rc = cli_identity_institution(c, opts[O_INST].value, &inst)) != CLI_EXIT_OK)
        return rc;
    ae.institution_id = inst.id;

    existed = directory_ae_get(c->dir, ae.title, &old, NULL) == CP_OK;
    if (existed && !opts[O_REPLACE].seen) {
        fprintf(stderr, "cloudpacs ae add: AE \"%s\": already exists (--replace changes it)\n",
                ae.title);
        return CLI_EXIT_FAILURE;
    }
    cp_error_clear(&err);
    st = directory_ae_put(c->dir, &ae, &err);
    if (st != CP_OK)
        return ae_failed(c, ae.title, st, &err);
    cli_identity_audit(c, existed ? "ae_updated" : "ae_added",
                       existed ? AUDIT_UPDATE : AUDIT_CREATE, "ae", 0, ae.title, inst.id,
                       json_pack("{s:s, s:s, s:s, s:i, s:s}", "title", ae.title,
                                 "institution", inst.code, "host", ae.host, "port", ae.port,
                                 "allow", ae.allow));
    printf("AE %s %s for %s\n", ae.title, existed ? "updated" : "added", inst.code);
    return CLI_EXIT_OK;
}

typedef struct ae_rows {
    directory_ae *items;
    size_t count;
    size_t cap;
} ae_rows;

static cp_status gather_ae(void *ctx, const directory_ae *ae)
{
    ae_rows *rows = ctx;
    cp_status st;

    st = cp_array_grow(&rows->items, &rows->cap, rows->count, sizeof *rows->items, 16,
                       DIRECTORY_ROWS_MAX);
    if (st == CP_OK)
        rows->items[rows->count++] = *ae;
    return st;
}

static int ae_list(cli_identity *c, int argc, char **argv)
{
    cli_identity_opt opts[] = { { "--json", false, NULL, false } };
    ae_rows rows = { NULL, 0, 0 };
    json_t *arr = NULL;
    cp_error err;
    cp_status st;
    int rc;

    rc = cli_identity_parse(c, argc, argv, opts, 1, 0, 0);
    if (rc != CLI_EXIT_OK || c->help)
        return rc;
    if ((rc = cli_identity_open(c, false)) != CLI_EXIT_OK)
        return rc;
    cp_error_clear(&err);
    st = directory_ae_list(c->dir, gather_ae, &rows, &err);
    if (st != CP_OK) {
        cp_free(rows.items);
        return cli_identity_fail(c, st, &err, "AEs");
    }

    if (opts[0].seen)
        arr = json_array();
    else
        printf("%-16s %-16s %-24s %-5s %s\n", "TITLE", "INSTITUTION", "HOST", "PORT", "ALLOW");
    for (size_t i = 0; i < rows.count; i++) {
        const directory_ae *ae = &rows.items[i];
        directory_institution inst;

        if (directory_institution_get(c->dir, ae->institution_id, &inst, NULL) != CP_OK)
            inst.code[0] = '\0';
        if (arr != NULL)
            json_array_append_new(arr, json_pack("{s:s, s:I, s:s, s:s, s:i, s:s}",
                                                 "title", ae->title, "institution_id",
                                                 (json_int_t)ae->institution_id,
                                                 "institution", inst.code, "host", ae->host,
                                                 "port", ae->port, "allow", ae->allow));
        else if (!opts[0].seen)
            printf("%-16s %-16s %-24s %-5d %s\n", ae->title, inst.code,
                   ae->host[0] != '\0' ? ae->host : "-", ae->port, ae->allow);
    }
    cp_free(rows.items);
    return opts[0].seen ? cli_identity_print_json(arr) : CLI_EXIT_OK;
}

static int ae_remove(cli_identity *c, int argc, char **argv)
{
    directory_ae ae;
    cp_error err;
    cp_status st;
    int rc;

    rc = cli_identity_parse(c, argc, argv, NULL, 0, 1, 1);
    if (rc != CLI_EXIT_OK || c->help)
        return rc;
    if ((rc = cli_identity_open(c, false)) != CLI_EXIT_OK)
        return rc;

    cp_error_clear(&err);
    st = directory_ae_get(c->dir, c->pos[0], &ae, &err);
    if (st == CP_OK)
        st = directory_ae_delete(c->dir, c->pos[0], &err);
    if (st != CP_OK)
        return ae_failed(c, c->pos[0], st, &err);
    cli_identity_audit(c, "ae_removed", AUDIT_DELETE, "ae", 0, ae.title, ae.institution_id,
                       json_pack("{s:s}", "title", ae.title));
    printf("AE %s removed\n", ae.title);
    return CLI_EXIT_OK;
}

int cli_ae_run(int argc, char **argv)
{
    cli_identity c;
    int rc;

    if (argc < 2) {
        cli_ae_usage(stderr);
        return CLI_EXIT_USAGE;
    }
    memset(&c, 0, sizeof c);
    c.command = "ae";
    c.action = argv[1];
    if (strcmp(argv[1], "add") == 0) {
        rc = ae_add(&c, argc, argv);
    } else if (strcmp(argv[1], "list") == 0) {
        rc = ae_list(&c, argc, argv);
    } else if (strcmp(argv[1], "remove") == 0) {
        rc = ae_remove(&c, argc, argv);
    } else {
        fprintf(stderr, "cloudpacs ae: unknown action \"%s\"\n", argv[1]);
        cli_ae_usage(stderr);
        return CLI_EXIT_USAGE;
    }
    if (c.help)
        cli_ae_usage(stdout);
    cli_identity_close(&c);
    return rc;
}
