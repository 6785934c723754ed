/*
 * cmd_institution.c - `cloudpacs institution`: the tree of reading centres,
 * hospitals and clinics of the directory (auth/directory.h), for first
 * set-up on the server: add, list, update.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cmd_identity.h"
#include "core/alloc.h"
#include "core/limits.h"

void cli_institution_usage(FILE *out)
{
    fprintf(out,
        "usage: cloudpacs institution add --code CODE --name NAME\n"
        "                                 --kind centre|hospital|clinic [--parent CODE]\n"
        "       cloudpacs institution list [--json]\n"
        "       cloudpacs institution update CODE [--name NAME] [--kind KIND]\n"
        "                                    [--parent CODE] [--disable | --enable]\n"
        "\n"
        "Manages the institutions of the directory: reading centres, hospitals and\n"
        "clinics in a tree. Codes are letters, digits, '_' and '-' (at most %d),\n"
        "unique without regard to case; they name institutions in the other\n"
        "commands. `--parent \"\"` makes an institution a root.\n"
        "\n"
        "common options:\n"
        "  --data-dir DIR   the data directory (default: [core] data_dir,\n"
        "                   CLOUDPACS_DATA_DIR, else ./cloudpacs-data); the\n"
        "                   directory lives in DIR/index.sqlite\n"
        "  --config FILE    the configuration file\n"
        "  -h, --help       this text\n"
        "\n"
        "Changes are recorded in the audit trail as made by cli:<login>.\n"
        "exit status: 0 done; 1 failed (not found, already exists, refused);\n"
        "2 bad command line; 4 bad configuration.\n", DIRECTORY_CODE_MAX);
}

/* The parent's id for a code ("" for none). */
static int parent_id(cli_identity *c, const char *code, int64_t *id)
{
    directory_institution parent;
    int rc;

    *id = 0;
    if (code == NULL || code[0] == '\0')
        return CLI_EXIT_OK;
    rc = cli_identity_institution(c, code, &parent);
    if (rc == CLI_EXIT_OK)
        *id = parent.id;
    return rc;
}

static json_t *institution_detail(const directory_institution *i)
{
    return json_pack("{s:s, s:s, s:I, s:b}", "code", i->code,
                     "kind", directory_kind_name(i->kind), "parent_id", (json_int_t)i->parent_id,
                     "disabled", i->disabled);
}

static int inst_add(cli_identity *c, int argc, char **argv)
{
    enum { O_CODE, O_NAME, O_KIND, O_PARENT, O_COUNT };
    cli_identity_opt opts[O_COUNT] = {
        { "--code", true, NULL, false }, { "--name", true, NULL, false },
        { "--kind", true, NULL, false }, { "--parent", true, NULL, false },
    };
    directory_institution inst;
    cp_error err;
    cp_status st;
    int rc;

    rc = cli_identity_parse(c, argc, argv, opts, O_COUNT, 0, 0);
    if (rc != CLI_EXIT_OK || c->help)
        return rc;
    if (!opts[O_CODE].seen || !opts[O_NAME].seen || !opts[O_KIND].seen) {
        fprintf(stderr, "cloudpacs institution add: --code, --name and --kind are needed\n");
        return CLI_EXIT_USAGE;
    }
    memset(&inst, 0, sizeof inst);
    inst.kind = directory_kind_parse(opts[O_KIND].value);
    if (inst.kind == 0) {
        fprintf(stderr, "cloudpacs institution add: --kind is centre, hospital or clinic\n");
        return CLI_EXIT_USAGE;
    }
    if (strlen(opts[O_CODE].value) > DIRECTORY_CODE_MAX ||
        strlen(opts[O_NAME].value) > DIRECTORY_NAME_MAX) {
        fprintf(stderr, "cloudpacs institution add: code or name too long\n");
        return CLI_EXIT_USAGE;
    }
    snprintf(inst.code, sizeof inst.code, "%s", opts[O_CODE].value);
    snprintf(inst.name, sizeof inst.name, "%s", opts[O_NAME].value);

    if ((rc = cli_identity_open(c, false)) != CLI_EXIT_OK)
        return rc;
    if ((rc = parent_id(c, opts[O_PARENT].value, &inst.parent_id)) != CLI_EXIT_OK)
        return rc;

    cp_error_clear(&err);
    st = directory_institution_create(c->dir, &inst, &err);
    if (st != CP_OK) {
        char what[DIRECTORY_CODE_MAX + 32];

        snprintf(what, sizeof what, "institution \"%s\"", inst.code);
        return cli_identity_fail(c, st, &err, what);
    }
    cli_identity_audit(c, "institution_created", AUDIT_CREATE, "institution", inst.id,
                       inst.code, inst.id, institution_detail(&inst));
    printf("institution %s created (id %lld)\n", inst.code, (long long)inst.id);
    return CLI_EXIT_OK;
}

typedef struct inst_rows {
    directory_institution *items;
    size_t count;
    size_t cap;
} inst_rows;

static cp_status gather(void *ctx, const directory_institution *inst)
{
    inst_rows *rows = ctx;
    cp_status st;

    st = cp_array_grow(&rows->items, &rows->cap, rows->count, sizeof *rows->items, 16,
                       DIRECTORY_ROWS_MAX);
    if (st == CP_OK)
        rows->items[rows->count++] = *inst;
    return st;
}

static const char *code_of(const inst_rows *rows, int64_t id)
{
    for (size_t i = 0; i < rows->count; i++)
        if (rows->items[i].id == id)
            return rows->items[i].code;
    return "";
}

static json_t *institution_json(const inst_rows *rows, const directory_institution *i)
{
    char when[32];

    return json_pack("{s:I, s:I, s:s?, s:s, s:s, s:s, s:b, s:s}", "id", (json_int_t)i->id,
                     "parent_id", (json_int_t)i->parent_id,
                     "parent", i->parent_id != 0 ? code_of(rows, i->parent_id) : NULL,
                     "kind", directory_kind_name(i->kind), "code", i->code, "name", i->name,
                     "disabled", i->disabled, "created", cli_identity_time(i->created_us, when));
}

static int inst_list(cli_identity *c, int argc, char **argv)
{
    cli_identity_opt opts[] = { { "--json", false, NULL, false } };
    inst_rows rows = { NULL, 0, 0 };
    cp_error err;
    cp_status st;
    int rc;

    rc = cli_identity_parse(c, argc, argv, opts, 1, 0, 0);
    if (rc != CLI_EXIT_OK || c->help)
        return rc;
    if ((rc = cli_identity_open(c, false)) != CLI_EXIT_OK)
        return rc;

    cp_error_clear(&err);
    st = directory_institution_list(c->dir, gather, &rows, &err);
    if (st != CP_OK) {
        cp_free(rows.items);
        return cli_identity_fail(c, st, &err, "institutions");
    }

    if (opts[0].seen) {
        json_t *arr = json_array();

        for (size_t i = 0; arr != NULL && i < rows.count; i++)
            json_array_append_new(arr, institution_json(&rows, &rows.items[i]));
        rc = cli_identity_print_json(arr);
    } else {
        printf("%-6s %-8s %-16s %-16s %s\n", "ID", "KIND", "CODE", "PARENT", "NAME");
        for (size_t i = 0; i < rows.count; i++) {
            const directory_institution *in = &rows.items[i];

            printf("%-6lld %-8s %-16s %-16s %s%s\n", (long long)in->id,
                   directory_kind_name(in->kind), in->code,
                   in->parent_id != 0 ? code_of(&rows, in->parent_id) : "-", in->name,
                   in->disabled ? " (disabled)" : "");
        }
    }
    cp_free(rows.items);
    return rc;
}

static int inst_update(cli_identity *c, int argc, char **argv)
{
    enum { O_NAME, O_KIND, O_PARENT, O_DISABLE, O_ENABLE, O_COUNT };
    cli_identity_opt opts[O_COUNT] = {
        { "--name", true, NULL, false }, { "--kind", true, NULL, false },
        { "--parent", true, NULL, false }, { "--disable", false, NULL, false },
        { "--enable", false, NULL, false },
    };
    directory_institution inst;
    cp_error err;
    cp_status st;
    int rc;

    rc = cli_identity_parse(c, argc, argv, opts, O_COUNT, 1, 1);
    if (rc != CLI_EXIT_OK || c->help)
        return rc;
    if (opts[O_DISABLE].seen && opts[O_ENABLE].seen) {
        fprintf(stderr, "cloudpacs institution update: --disable or --enable, not both\n");
        return CLI_EXIT_USAGE;
    }
    if (!opts[O_NAME].seen && !opts[O_KIND].seen && !opts[O_PARENT].seen &&
        !opts[O_DISABLE].seen && !opts[O_ENABLE].seen) {
        fprintf(stderr, "cloudpacs institution update: nothing to change\n");
        return CLI_EXIT_USAGE;
    }
    if (opts[O_NAME].seen && strlen(opts[O_NAME].value) > DIRECTORY_NAME_MAX) {
        fprintf(stderr, "cloudpacs institution update: name too long\n");
        return CLI_EXIT_USAGE;
    }
    if (opts[O_KIND].seen && directory_kind_parse(opts[O_KIND].value) == 0) {
        fprintf(stderr, "cloudpacs institution update: --kind is centre, hospital or clinic\n");
        return CLI_EXIT_USAGE;
    }

    if ((rc = cli_identity_open(c, false)) != CLI_EXIT_OK)
        return rc;
    if ((rc = cli_identity_institution(c, c->pos[0], &inst)) != CLI_EXIT_OK)
        return rc;
    if (opts[O_PARENT].seen &&
        (rc = parent_id(c, opts[O_PARENT].value, &inst.parent_id)) != CLI_EXIT_OK)
        return rc;
    if (opts[O_NAME].seen)
        snprintf(inst.name, sizeof inst.name, "%s", opts[O_NAME].value);
    if (opts[O_KIND].seen)
        inst.kind = directory_kind_parse(opts[O_KIND].value);
    if (opts[O_DISABLE].seen || opts[O_ENABLE].seen)
        inst.disabled = opts[O_DISABLE].seen;

    cp_error_clear(&err);
    st = directory_institution_update(c->dir, &inst, &err);
    if (st != CP_OK) {
        char what[DIRECTORY_CODE_MAX + 32];

        snprintf(what, sizeof what, "institution \"%s\"", inst.code);
        return cli_identity_fail(c, st, &err, what);
    }
    cli_identity_audit(c, "institution_updated", AUDIT_UPDATE, "institution", inst.id,
                       inst.code, inst.id, institution_detail(&inst));
    printf("institution %s updated\n", inst.code);
    return CLI_EXIT_OK;
}

int cli_institution_run(int argc, char **argv)
{
    cli_identity c;
    int rc;

    if (argc < 2) {
        cli_institution_usage(stderr);
        return CLI_EXIT_USAGE;
    }
    memset(&c, 0, sizeof c);
    c.command = "institution";
    c.action = argv[1];
    if (strcmp(argv[1], "add") == 0) {
        rc = inst_add(&c, argc, argv);
    } else if (strcmp(argv[1], "list") == 0) {
        rc = inst_list(&c, argc, argv);
    } else if (strcmp(argv[1], "update") == 0) {
        rc = inst_update(&c, argc, argv);
    } else {
        fprintf(stderr, "cloudpacs institution: unknown action \"%s\"\n", argv[1]);
        cli_institution_usage(stderr);
        return CLI_EXIT_USAGE;
    }
    if (c.help)
        cli_institution_usage(stdout);
    cli_identity_close(&c);
    return rc;
}
