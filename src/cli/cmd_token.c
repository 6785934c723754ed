/*
 * cmd_token.c - `cloudpacs token`: API tokens for machines (a modality
 * gateway, a HIS) of one institution (auth/directory.h): create, list,
 * revoke. A token is printed once, at creation, and kept only as its
 * BLAKE2b hash; it never carries a separated administrator role.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "cli/cli.h"
#include "cli/cmd_identity.h"
#include "core/alloc.h"
#include "core/limits.h"

/* Days a token may be made to last at most: ten years. */
#define TOKEN_DAYS_MAX 3650

void cli_token_usage(FILE *out)
{
    fprintf(out,
        "usage: cloudpacs token create --name NAME --institution CODE --roles ROLE[,ROLE...]\n"
        "                              [--expires-days N]\n"
        "       cloudpacs token list [--json]\n"
        "       cloudpacs token revoke ID\n"
        "\n"
        "Manages the API tokens machines present as `Authorization: Bearer cpat_...`.\n"
        "create prints the token once, alone on stdout (its id goes to stderr); only\n"
        "its hash is kept. Tokens take clinical roles and institution_admin, never\n"
        "system_admin, security_admin or audit_admin. --expires-days is 1 to %d\n"
        "(default: no expiry).\n"
        "\n"
        "common options:\n"
        "  --data-dir DIR   the data directory (default: [core] data_dir,\n"
        "                   CLOUDPACS_DATA_DIR, else ./cloudpacs-data)\n"
        "  --config FILE    the configuration file\n"
        "  -h, --help       this text\n"
        "\n"
        "Changes are recorded in the audit trail as made by cli:<login>.\n"
        "exit status: 0 done; 1 failed (not found, refused); 2 bad command line;\n"
        "4 bad configuration.\n", TOKEN_DAYS_MAX);
}

static bool parse_number(const char *s, long min, long max, long *out)
{
    char *end;
    long v;

    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
        return false;
    *out = v;
    return true;
}

static int token_create(cli_identity *c, int argc, char **argv)
{
    enum { O_NAME, O_INST, O_ROLES, O_DAYS, O_COUNT };
    cli_identity_opt opts[O_COUNT] = {
        { "--name", true, NULL, false }, { "--institution", true, NULL, false },
        { "--roles", true, NULL, false }, { "--expires-days", true, NULL, false },
    };
    directory_institution inst;
    directory_api_token t;
    char text[64];
    long days = 0;
    cp_error err;
    cp_status st;
    int rc;

    rc = cli_identity_parse(c, argc, argv, opts, O_COUNT, 0, 0);
    if (rc != CLI_EXIT_OK || c->help)
        return rc;
    if (!opts[O_NAME].seen || !opts[O_INST].seen || !opts[O_ROLES].seen) {
        fprintf(stderr, "cloudpacs token create: --name, --institution and --roles are "
                        "needed\n");
        return CLI_EXIT_USAGE;
    }
    memset(&t, 0, sizeof t);
    if (strlen(opts[O_NAME].value) > DIRECTORY_NAME_MAX) {
        fprintf(stderr, "cloudpacs token create: name too long\n");
        return CLI_EXIT_USAGE;
    }
    snprintf(t.name, sizeof t.name, "%s", opts[O_NAME].value);
    cp_error_clear(&err);
    if (directory_roles_parse(opts[O_ROLES].value, &t.roles, &err) != CP_OK) {
        fprintf(stderr, "cloudpacs token create: %s\n", err.detail);
        return CLI_EXIT_USAGE;
    }
    if (opts[O_DAYS].seen && !parse_number(opts[O_DAYS].value, 1, TOKEN_DAYS_MAX, &days)) {
        fprintf(stderr, "cloudpacs token create: --expires-days is 1 to %d\n", TOKEN_DAYS_MAX);
        return CLI_EXIT_USAGE;
    }
    if (days > 0)
        t.expires_us = ((int64_t)time(NULL) + (int64_t)days * 86400) * 1000000;

    if ((rc = cli_identity_open(c, false)) != CLI_EXIT_OK)
        return rc;
    if ((rc = cli_identity_institution(c, opts[O_INST].value, &inst)) != CLI_EXIT_OK)
        return rc;
    t.institution_id = inst.id;

    st = directory_token_create(c->dir, &t, text, sizeof text, &err);
    if (st != CP_OK)
        return cli_identity_fail(c, st, &err, "token");
    cli_identity_audit(c, "token_created", AUDIT_CREATE, "token", t.id, t.name, inst.id,
                       json_pack("{s:s, s:o, s:I}", "institution", inst.code, "roles",
                                 cli_identity_roles_json(t.roles), "expires",
                                 (json_int_t)(t.expires_us / 1000000)));
    fprintf(stderr, "token %lld \"%s\" created for %s; it is shown this once\n",
            (long long)t.id, t.name, inst.code);
    printf("%s\n", text);
    fflush(stdout);
    sodium_memzero(text, sizeof text);
    return CLI_EXIT_OK;
}

typedef struct token_rows {
    directory_api_token *items;
    size_t count;
    size_t cap;
} token_rows;

static cp_status gather_token(void *ctx, const directory_api_token *t)
{
    token_rows *rows = ctx;
    cp_status st;

    st = cp_array_grow(&rows->items, &rows->cap, rows->count, sizeof *rows->items, 16,
                       DIRECTORY_ROWS_MAX);
    if (st == CP_OK)
        rows->items[rows->count++] = *t;
    return st;
}

static const char *token_state(const directory_api_token *t)
{
    if (t->revoked)
        return "revoked";
    if (t->expires_us != 0 && t->expires_us <= (int64_t)time(NULL) * 1000000)
        return "expired";
    return "active";
}

static json_t *token_json(const directory_api_token *t, const char *code)
{
    char created[32], expires[32];

    return json_pack("{s:I, s:s, s:I, s:s, s:o, s:s, s:s?, s:b, s:s}", "id", (json_int_t)t->id,
                     "name", t->name, "institution_id", (json_int_t)t->institution_id,
                     "institution", code, "roles", cli_identity_roles_json(t->roles),
                     "created", cli_identity_time(t->created_us, created),
                     "expires", t->expires_us != 0 ? cli_identity_time(t->expires_us, expires)
                                                   : NULL,
                     "revoked", t->revoked, "state", token_state(t));
}

static int token_list(cli_identity *c, int argc, char **argv)
{
    cli_identity_opt opts[] = { { "--json", false, NULL, false } };
    token_rows rows = { NULL, 0, 0 };
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
    st = directory_token_list(c->dir, gather_token, &rows, &err);
    if (st != CP_OK) {
        cp_free(rows.items);
        return cli_identity_fail(c, st, &err, "tokens");
    }

    if (opts[0].seen)
        arr = json_array();
    else
        printf("%-6s %-24s %-16s %-24s %-8s %s\n", "ID", "NAME", "INSTITUTION", "ROLES",
               "STATE", "EXPIRES");
    for (size_t i = 0; i < rows.count; i++) {
        const directory_api_token *t = &rows.items[i];
        directory_institution inst;
        char roles[128], when[32];

        if (directory_institution_get(c->dir, t->institution_id, &inst, NULL) != CP_OK)
            inst.code[0] = '\0';
        if (arr != NULL) {
            json_array_append_new(arr, token_json(t, inst.code));
            continue;
        }
        if (directory_roles_format(t->roles, roles, sizeof roles) != CP_OK || roles[0] == '\0')
            snprintf(roles, sizeof roles, "-");
        printf("%-6lld %-24s %-16s %-24s %-8s %s\n", (long long)t->id, t->name, inst.code,
               roles, token_state(t),
               t->expires_us != 0 ? cli_identity_time(t->expires_us, when) : "never");
    }
    cp_free(rows.items);
    return opts[0].seen ? cli_identity_print_json(arr) : CLI_EXIT_OK;
}

static int token_revoke(cli_identity *c, int argc, char **argv)
{
    char what[48];
    long id = 0;
    cp_error err;
    cp_status st;
    int rc;

    rc = cli_identity_parse(c, argc, argv, NULL, 0, 1, 1);
    if (rc != CLI_EXIT_OK || c->help)
        return rc;
    if (!parse_number(c->pos[0], 1, INT32_MAX, &id)) {
        fprintf(stderr, "cloudpacs token revoke: ID is a token's number (see token list)\n");
        return CLI_EXIT_USAGE;
    }
    if ((rc = cli_identity_open(c, false)) != CLI_EXIT_OK)
        return rc;

    cp_error_clear(&err);
    st = directory_token_revoke(c->dir, id, &err);
    if (st != CP_OK) {
        snprintf(what, sizeof what, "token %ld", id);
        return cli_identity_fail(c, st, st == CP_ERR_NOT_FOUND ? NULL : &err, what);
    }
    cli_identity_audit(c, "token_revoked", AUDIT_UPDATE, "token", id, "", 0, NULL);
    printf("token %ld revoked\n", id);
    return CLI_EXIT_OK;
}

int cli_token_run(int argc, char **argv)
{
    cli_identity c;
    int rc;

    if (argc < 2) {
        cli_token_usage(stderr);
        return CLI_EXIT_USAGE;
    }
    memset(&c, 0, sizeof c);
    c.command = "token";
    c.action = argv[1];
    if (strcmp(argv[1], "create") == 0) {
        rc = token_create(&c, argc, argv);
    } else if (strcmp(argv[1], "list") == 0) {
        rc = token_list(&c, argc, argv);
    } else if (strcmp(argv[1], "revoke") == 0) {
        rc = token_revoke(&c, argc, argv);
    } else {
        fprintf(stderr, "cloudpacs token: unknown action \"%s\"\n", argv[1]);
        cli_token_usage(stderr);
        return CLI_EXIT_USAGE;
    }
    if (c.help)
        cli_token_usage(stdout);
    cli_identity_close(&c);
    return rc;
}
