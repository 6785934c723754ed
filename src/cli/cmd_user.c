/*
 * cmd_user.c - `cloudpacs user`: the users of the directory
 * (auth/directory.h) for first set-up and for the operator: add, list,
 * passwd, roles, disable, enable, totp-reset, qualify.
 *
 * Passwords come from a file or from standard input (the first line), or
 * are made here and printed once; they never appear on a command line,
 * where other users of the machine could read them. The directory keeps
 * only their Argon2id hash (auth/credential.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "auth/credential.h"
#include "cli/cli.h"
#include "cli/cmd_identity.h"
#include "core/alloc.h"
#include "core/limits.h"

/* Characters of a made password: no 0/O, 1/l/I to misread when it is copied. */
#define PASSWORD_ALPHABET "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789"

/* A made password: four groups of five (about 116 bits), joined by '-'. */
#define PASSWORD_GROUPS     4
#define PASSWORD_GROUP_LEN  5

void cli_user_usage(FILE *out)
{
    fprintf(out,
        "usage: cloudpacs user add USERNAME --institution CODE --roles ROLE[,ROLE...]\n"
        "                          [--name DISPLAY] [--title N] [--may-self-approve]\n"
        "                          [--password-file FILE | --password-stdin]\n"
        "       cloudpacs user list [--institution CODE] [--json]\n"
        "       cloudpacs user passwd USERNAME [--password-file FILE | --password-stdin]\n"
        "       cloudpacs user roles USERNAME ROLE[,ROLE...]\n"
        "       cloudpacs user disable USERNAME\n"
        "       cloudpacs user enable USERNAME\n"
        "       cloudpacs user totp-reset USERNAME\n"
        "       cloudpacs user qualify USERNAME MODALITY:BODYPART[,...]\n"
        "\n"
        "Manages the users of the directory. Roles: institution_admin, technician,\n"
        "radiologist, reviewer, system_admin, security_admin, audit_admin; the last\n"
        "three are separated: whoever holds one holds no other role. Usernames are\n"
        "letters, digits and . _ @ - (at most %d), unique without regard to case.\n"
        "--title is a radiologist's rank: 0 none, 1 resident, 2 attending, 3\n"
        "associate chief, 4 chief. A qualification is MODALITY:BODYPART, \"*\" for any\n"
        "(\"CT:HEAD,CR:*\"); an empty list clears them.\n"
        "\n"
        "Passwords are read from the first line of FILE or of standard input; with\n"
        "neither option a strong password is made and printed once on stdout.\n"
        "Passwords need %d to %d characters and two of: letters, digits, others.\n"
        "`user list --institution CODE` lists that institution and its subtree.\n"
        "totp-reset removes a user's second factor (they enrol again at login).\n"
        "\n"
        "common options:\n"
        "  --data-dir DIR   the data directory (default: [core] data_dir,\n"
        "                   CLOUDPACS_DATA_DIR, else ./cloudpacs-data)\n"
        "  --config FILE    the configuration file\n"
        "  -h, --help       this text\n"
        "\n"
        "Changes are recorded in the audit trail as made by cli:<login>.\n"
        "exit status: 0 done; 1 failed (not found, already exists, refused by the\n"
        "separation of administrators); 2 bad command line or password;\n"
        "4 bad configuration.\n", DIRECTORY_USERNAME_MAX, CREDENTIAL_PASSWORD_MIN,
        CREDENTIAL_PASSWORD_MAX);
}

/* --- passwords ----------------------------------------------------------------- */

static void make_password(char out[PASSWORD_GROUPS * (PASSWORD_GROUP_LEN + 1)])
{
    size_t o = 0;

    for (int g = 0; g < PASSWORD_GROUPS; g++) {
        if (g > 0)
            out[o++] = '-';
        for (int k = 0; k < PASSWORD_GROUP_LEN; k++)
            out[o++] = PASSWORD_ALPHABET[randombytes_uniform(sizeof PASSWORD_ALPHABET - 1)];
    }
    out[o] = '\0';
}

/* The first line of a file or of stdin into out, without its line end. */
static int read_password(const cli_identity *c, const char *path, char *out, size_t cap)
{
    FILE *f = path != NULL ? fopen(path, "rb") : stdin;
    bool whole = false;
    size_t n = 0;

    if (f == NULL) {
        fprintf(stderr, "cloudpacs user %s: %s: cannot be read\n", c->action, path);
        return CLI_EXIT_FAILURE;
    }
    if (fgets(out, (int)cap, f) != NULL) {
        n = strlen(out);

        /* A line that filled the buffer without its end is too long. */
        whole = (n > 0 && out[n - 1] == '\n') || feof(f);
        while (n > 0 && (out[n - 1] == '\n' || out[n - 1] == '\r'))
            out[--n] = '\0';
    }
    if (path != NULL)
        fclose(f);

    if (n == 0 || !whole) {
        fprintf(stderr, "cloudpacs user %s: no password (or one longer than %d)\n", c->action,
                CREDENTIAL_PASSWORD_MAX);
        sodium_memzero(out, cap);
        return CLI_EXIT_USAGE;
    }
    return CLI_EXIT_OK;
}

/*
 * The Argon2id hash of the password from --password-file, --password-stdin
 * or made here (then copied to made, for printing once).
 */
static int password_hash(const cli_identity *c, const cli_identity_opt *file,
                         const cli_identity_opt *from_stdin, char *hash, bool *made_one,
                         char made[PASSWORD_GROUPS * (PASSWORD_GROUP_LEN + 1)])
{
    char pw[CREDENTIAL_PASSWORD_MAX + 3];
    cp_error err;
    cp_status st;
    int rc = CLI_EXIT_OK;

    *made_one = false;
    if (file->seen && from_stdin->seen) {
        fprintf(stderr, "cloudpacs user %s: --password-file or --password-stdin, not both\n",
                c->action);
        return CLI_EXIT_USAGE;
    }
    if (file->seen || from_stdin->seen) {
        rc = read_password(c, file->seen ? file->value : NULL, pw, sizeof pw);
    } else {
        make_password(made);
        snprintf(pw, sizeof pw, "%s", made);
        *made_one = true;
    }
    if (rc != CLI_EXIT_OK)
        return rc;

    if (credential_init() != CP_OK)
        rc = cli_identity_fail(c, CP_ERR_UNAVAILABLE, NULL, "libsodium");
    cp_error_clear(&err);
    if (rc == CLI_EXIT_OK &&
        (st = credential_password_hash(pw, hash, CREDENTIAL_HASH_SIZE, &err)) != CP_OK)
        rc = cli_identity_fail(c, st, &err, "password refused");
    sodium_memzero(pw, sizeof pw);
    return rc;
}

/* --- helpers --------------------------------------------------------------------- */

static int find_user(cli_identity *c, const char *username, directory_user *out)
{
    char what[DIRECTORY_USERNAME_MAX + 16];
    cp_error err;
    cp_status st;

    cp_error_clear(&err);
    st = directory_user_by_name(c->dir, username, out, &err);
    if (st == CP_OK)
        return CLI_EXIT_OK;
    snprintf(what, sizeof what, "user \"%.*s\"", DIRECTORY_USERNAME_MAX, username);
    return cli_identity_fail(c, st, st == CP_ERR_NOT_FOUND ? NULL : &err, what);
}

static int user_failed(cli_identity *c, const char *username, cp_status st, const cp_error *err)
{
    char what[DIRECTORY_USERNAME_MAX + 16];

    snprintf(what, sizeof what, "user \"%.*s\"", DIRECTORY_USERNAME_MAX, username);
    return cli_identity_fail(c, st, err, what);
}

static int parse_roles(const cli_identity *c, const char *list, unsigned *roles)
{
    cp_error err;

    cp_error_clear(&err);
    if (strlen(list) > 256 || directory_roles_parse(list, roles, &err) != CP_OK) {
        fprintf(stderr, "cloudpacs user %s: %s\n", c->action,
                err.status != CP_OK ? err.detail : "role list too long");
        return CLI_EXIT_USAGE;
    }
    return CLI_EXIT_OK;
}

static json_t *roles_detail(const char *username, unsigned roles)
{
    return json_pack("{s:s, s:o}", "username", username, "roles",
                     cli_identity_roles_json(roles));
}

/* --- actions ------------------------------------------------------------------------ */

static int user_add(cli_identity *c, int argc, char **argv)
{
    enum { O_INST, O_ROLES, O_NAME, O_TITLE, O_SELF, O_FILE, O_STDIN, O_COUNT };
    cli_identity_opt opts[O_COUNT] = {
        { "--institution", true, NULL, false }, { "--roles", true, NULL, false },
        { "--name", true, NULL, false }, { "--title", true, NULL, false },
        { "--may-self-approve", false, NULL, false },
        { "--password-file", true, NULL, false }, { "--password-stdin", false, NULL, false },
    };
    char hash[CREDENTIAL_HASH_SIZE], made[PASSWORD_GROUPS * (PASSWORD_GROUP_LEN + 1)];
    directory_institution inst;
    directory_user u;
    bool made_one = false;
    cp_error err;
    cp_status st;
    int rc;

    rc = cli_identity_parse(c, argc, argv, opts, O_COUNT, 1, 1);
    if (rc != CLI_EXIT_OK || c->help)
        return rc;
    if (!opts[O_INST].seen || !opts[O_ROLES].seen) {
        fprintf(stderr, "cloudpacs user add: --institution and --roles are needed\n");
        return CLI_EXIT_USAGE;
    }
    memset(&u, 0, sizeof u);
    if (strlen(c->pos[0]) > DIRECTORY_USERNAME_MAX ||
        (opts[O_NAME].seen && strlen(opts[O_NAME].value) > DIRECTORY_NAME_MAX)) {
        fprintf(stderr, "cloudpacs user add: username or display name too long\n");
        return CLI_EXIT_USAGE;
    }
    snprintf(u.username, sizeof u.username, "%s", c->pos[0]);
    snprintf(u.display_name, sizeof u.display_name, "%s",
             opts[O_NAME].seen ? opts[O_NAME].value : c->pos[0]);
    if (opts[O_TITLE].seen) {
        const char *t = opts[O_TITLE].value;

        if (t[0] < '0' || t[0] > '4' || t[1] != '\0') {
            fprintf(stderr, "cloudpacs user add: --title is 0 to 4\n");
            return CLI_EXIT_USAGE;
        }
        u.title = t[0] - '0';
    }
    u.may_self_approve = opts[O_SELF].seen;
    if ((rc = parse_roles(c, opts[O_ROLES].value, &u.roles)) != CLI_EXIT_OK)
        return rc;
    rc = password_hash(c, &opts[O_FILE], &opts[O_STDIN], hash, &made_one, made);
    if (rc != CLI_EXIT_OK)
        return rc;

    if ((rc = cli_identity_open(c, false)) != CLI_EXIT_OK)
        goto done;
    if ((rc = cli_identity_institution(c, opts[O_INST].value, &inst)) != CLI_EXIT_OK)
        goto done;
    u.institution_id = inst.id;

    cp_error_clear(&err);
    st = directory_user_create(c->dir, &u, hash, &err);
    if (st != CP_OK) {
        rc = user_failed(c, u.username, st, &err);
        goto done;
    }
    cli_identity_audit(c, "user_created", AUDIT_CREATE, "user", u.id, u.username, inst.id,
                       roles_detail(u.username, u.roles));
    printf("user %s created (id %lld)\n", u.username, (long long)u.id);
    if (made_one)
        printf("password: %s\n", made);

done:
    sodium_memzero(made, sizeof made);
    return rc;
}

typedef struct user_rows {
    directory_user *items;
    size_t count;
    size_t cap;
} user_rows;

static cp_status gather_user(void *ctx, const directory_user *u)
{
    user_rows *rows = ctx;
    cp_status st;

    st = cp_array_grow(&rows->items, &rows->cap, rows->count, sizeof *rows->items, 16,
                       DIRECTORY_ROWS_MAX);
    if (st == CP_OK)
        rows->items[rows->count++] = *u;
    return st;
}

static json_t *user_json(cli_identity *c, const directory_user *u)
{
    directory_institution inst;
    char created[32], changed[32];

    if (directory_institution_get(c->dir, u->institution_id, &inst, NULL) != CP_OK)
        inst.code[0] = '\0';
    return json_pack("{s:I, s:s, s:s, s:I, s:s, s:o, s:i, s:b, s:b, s:b, s:I, s:s, s:s}",
                     "id", (json_int_t)u->id, "username", u->username,
                     "display_name", u->display_name,
                     "institution_id", (json_int_t)u->institution_id, "institution", inst.code,
                     "roles", cli_identity_roles_json(u->roles), "title", u->title,
                     "may_self_approve", u->may_self_approve, "disabled", u->disabled,
                     "totp_enabled", u->totp_enabled,
                     "profile_version", (json_int_t)u->profile_version,
                     "created", cli_identity_time(u->created_us, created),
                     "password_changed", cli_identity_time(u->password_changed_us, changed));
}

static void user_line(cli_identity *c, const directory_user *u)
{
    directory_institution inst;
    char roles[128];

    if (directory_institution_get(c->dir, u->institution_id, &inst, NULL) != CP_OK)
        snprintf(inst.code, sizeof inst.code, "%lld", (long long)u->institution_id);
    if (directory_roles_format(u->roles, roles, sizeof roles) != CP_OK || roles[0] == '\0')
        snprintf(roles, sizeof roles, "-");
    printf("%-6lld %-20s %-16s %-32s %s%s%s\n", (long long)u->id, u->username, inst.code,
           roles, u->display_name, u->disabled ? " (disabled)" : "",
           u->totp_enabled ? " (totp)" : "");
}

static int user_list(cli_identity *c, int argc, char **argv)
{
    cli_identity_opt opts[] = {
        { "--institution", true, NULL, false }, { "--json", false, NULL, false },
    };
    user_rows rows = { NULL, 0, 0 };
    int64_t *ids = NULL;
    size_t nids = 0;
    cp_error err;
    cp_status st;
    int rc;

    rc = cli_identity_parse(c, argc, argv, opts, 2, 0, 0);
    if (rc != CLI_EXIT_OK || c->help)
        return rc;
    if ((rc = cli_identity_open(c, false)) != CLI_EXIT_OK)
        return rc;

    cp_error_clear(&err);
    if (opts[0].seen) {
        directory_institution inst;

        if ((rc = cli_identity_institution(c, opts[0].value, &inst)) != CLI_EXIT_OK)
            return rc;
        st = directory_institution_subtree(c->dir, inst.id, &ids, &nids, &err);
        if (st != CP_OK)
            return cli_identity_fail(c, st, &err, "institution subtree");
        st = directory_user_list(c->dir, ids, nids, gather_user, &rows, &err);
    } else {
        st = directory_user_list(c->dir, NULL, 0, gather_user, &rows, &err);
    }
    cp_free(ids);
    if (st != CP_OK) {
        cp_free(rows.items);
        return cli_identity_fail(c, st, &err, "users");
    }

    if (opts[1].seen) {
        json_t *arr = json_array();

        for (size_t i = 0; arr != NULL && i < rows.count; i++)
            json_array_append_new(arr, user_json(c, &rows.items[i]));
        rc = cli_identity_print_json(arr);
    } else {
        printf("%-6s %-20s %-16s %-32s %s\n", "ID", "USERNAME", "INSTITUTION", "ROLES", "NAME");
        for (size_t i = 0; i < rows.count; i++)
            user_line(c, &rows.items[i]);
    }
    cp_free(rows.items);
    return rc;
}

static int user_passwd(cli_identity *c, int argc, char **argv)
{
    cli_identity_opt opts[] = {
        { "--password-file", true, NULL, false }, { "--password-stdin", false, NULL, false },
    };
    char hash[CREDENTIAL_HASH_SIZE], made[PASSWORD_GROUPS * (PASSWORD_GROUP_LEN + 1)];
    bool made_one = false;
    directory_user u;
    cp_error err;
    cp_status st;
    int rc;

    rc = cli_identity_parse(c, argc, argv, opts, 2, 1, 1);
    if (rc != CLI_EXIT_OK || c->help)
        return rc;
    if ((rc = cli_identity_open(c, false)) != CLI_EXIT_OK)
        return rc;
    if ((rc = find_user(c, c->pos[0], &u)) != CLI_EXIT_OK)
        return rc;
    rc = password_hash(c, &opts[0], &opts[1], hash, &made_one, made);
    if (rc != CLI_EXIT_OK)
        return rc;

    cp_error_clear(&err);
    st = directory_user_set_password(c->dir, u.id, hash, &err);
    if (st != CP_OK) {
        rc = user_failed(c, u.username, st, &err);
    } else {
        cli_identity_audit(c, "password_changed", AUDIT_UPDATE, "user", u.id, u.username,
                           u.institution_id, json_pack("{s:s}", "username", u.username));
        printf("password of %s changed\n", u.username);
        if (made_one)
            printf("password: %s\n", made);
    }
    sodium_memzero(made, sizeof made);
    return rc;
}

static int user_roles(cli_identity *c, int argc, char **argv)
{
    directory_user u;
    unsigned roles = 0;
    char text[128];
    cp_error err;
    cp_status st;
    json_t *detail;
    int rc;

    rc = cli_identity_parse(c, argc, argv, NULL, 0, 2, 2);
    if (rc != CLI_EXIT_OK || c->help)
        return rc;
    if ((rc = parse_roles(c, c->pos[1], &roles)) != CLI_EXIT_OK)
        return rc;
    if ((rc = cli_identity_open(c, false)) != CLI_EXIT_OK)
        return rc;
    if ((rc = find_user(c, c->pos[0], &u)) != CLI_EXIT_OK)
        return rc;

    cp_error_clear(&err);
    st = directory_user_set_roles(c->dir, u.id, roles, &err);
    if (st != CP_OK)
        return user_failed(c, u.username, st, &err);
    detail = roles_detail(u.username, roles);
    if (detail != NULL)
        json_object_set_new(detail, "previous", cli_identity_roles_json(u.roles));
    cli_identity_audit(c, "roles_changed", AUDIT_UPDATE, "user", u.id, u.username,
                       u.institution_id, detail);
    if (directory_roles_format(roles, text, sizeof text) != CP_OK || text[0] == '\0')
        snprintf(text, sizeof text, "(none)");
    printf("roles of %s: %s\n", u.username, text);
    return CLI_EXIT_OK;
}

static int user_enable(cli_identity *c, int argc, char **argv, bool disable)
{
    directory_user u;
    cp_error err;
    cp_status st;
    int rc;

    rc = cli_identity_parse(c, argc, argv, NULL, 0, 1, 1);
    if (rc != CLI_EXIT_OK || c->help)
        return rc;
    if ((rc = cli_identity_open(c, false)) != CLI_EXIT_OK)
        return rc;
    if ((rc = find_user(c, c->pos[0], &u)) != CLI_EXIT_OK)
        return rc;

    u.disabled = disable;
    cp_error_clear(&err);
    st = directory_user_update(c->dir, &u, &err);
    if (st != CP_OK)
        return user_failed(c, u.username, st, &err);
    cli_identity_audit(c, disable ? "user_disabled" : "user_enabled", AUDIT_UPDATE, "user",
                       u.id, u.username, u.institution_id,
                       json_pack("{s:s}", "username", u.username));
    printf("user %s %s\n", u.username, disable ? "disabled" : "enabled");
    return CLI_EXIT_OK;
}

static int user_totp_reset(cli_identity *c, int argc, char **argv)
{
    directory_user u;
    cp_error err;
    cp_status st;
    int rc;

    rc = cli_identity_parse(c, argc, argv, NULL, 0, 1, 1);
    if (rc != CLI_EXIT_OK || c->help)
        return rc;
    if ((rc = cli_identity_open(c, true)) != CLI_EXIT_OK)
        return rc;
    if ((rc = find_user(c, c->pos[0], &u)) != CLI_EXIT_OK)
        return rc;

    cp_error_clear(&err);
    st = directory_user_set_totp(c->dir, u.id, "", &err);
    if (st != CP_OK)
        return user_failed(c, u.username, st, &err);
    cli_identity_audit(c, "totp_reset", AUDIT_UPDATE, "user", u.id, u.username,
                       u.institution_id, json_pack("{s:s}", "username", u.username));
    printf("second factor of %s removed\n", u.username);
    return CLI_EXIT_OK;
}

/* "CT:HEAD,CR:*" into a new array. */
static int parse_qualifications(const cli_identity *c, const char *list,
                                directory_qualification **out, size_t *count)
{
    directory_qualification *q = NULL;
    size_t cap = 0, n = 0;
    const char *p = list;

    while (*p != '\0') {
        size_t len = strcspn(p, ","), mlen;
        const char *colon = memchr(p, ':', len);

        if (colon == NULL || (mlen = (size_t)(colon - p)) == 0 || mlen > 16 ||
            len - mlen - 1 == 0 || len - mlen - 1 > 16) {
            fprintf(stderr, "cloudpacs user %s: \"%.*s\" is not MODALITY:BODYPART\n",
                    c->action, (int)(len > 40 ? 40 : len), p);
            cp_free(q);
            return CLI_EXIT_USAGE;
        }
        if (cp_array_grow(&q, &cap, n, sizeof *q, 8, DIRECTORY_QUALIFICATIONS_MAX) != CP_OK) {
            fprintf(stderr, "cloudpacs user %s: more than %d qualifications\n", c->action,
                    DIRECTORY_QUALIFICATIONS_MAX);
            cp_free(q);
            return CLI_EXIT_USAGE;
        }
        memcpy(q[n].modality, p, mlen);
        q[n].modality[mlen] = '\0';
        memcpy(q[n].body_part, colon + 1, len - mlen - 1);
        q[n].body_part[len - mlen - 1] = '\0';
        n++;
        p += len;
        if (*p == ',')
            p++;
    }
    *out = q;
    *count = n;
    return CLI_EXIT_OK;
}

static int user_qualify(cli_identity *c, int argc, char **argv)
{
    directory_qualification *q = NULL;
    directory_user u;
    size_t n = 0;
    cp_error err;
    cp_status st;
    int rc;

    rc = cli_identity_parse(c, argc, argv, NULL, 0, 2, 2);
    if (rc != CLI_EXIT_OK || c->help)
        return rc;
    if ((rc = parse_qualifications(c, c->pos[1], &q, &n)) != CLI_EXIT_OK)
        return rc;
    if ((rc = cli_identity_open(c, false)) != CLI_EXIT_OK)
        goto done;
    if ((rc = find_user(c, c->pos[0], &u)) != CLI_EXIT_OK)
        goto done;

    cp_error_clear(&err);
    st = directory_qualifications_set(c->dir, u.id, q, n, &err);
    if (st != CP_OK) {
        rc = user_failed(c, u.username, st, &err);
        goto done;
    }
    cli_identity_audit(c, "qualifications_changed", AUDIT_UPDATE, "user", u.id, u.username,
                       u.institution_id,
                       json_pack("{s:s, s:s}", "username", u.username, "qualifications",
                                 c->pos[1]));
    printf("%zu qualification%s for %s\n", n, n == 1 ? "" : "s", u.username);

done:
    cp_free(q);
    return rc;
}

int cli_user_run(int argc, char **argv)
{
    cli_identity c;
    const char *a;
    int rc;

    if (argc < 2) {
        cli_user_usage(stderr);
        return CLI_EXIT_USAGE;
    }
    memset(&c, 0, sizeof c);
    c.command = "user";
    c.action = a = argv[1];
    if (strcmp(a, "add") == 0) {
        rc = user_add(&c, argc, argv);
    } else if (strcmp(a, "list") == 0) {
        rc = user_list(&c, argc, argv);
    } else if (strcmp(a, "passwd") == 0) {
        rc = user_passwd(&c, argc, argv);
    } else if (strcmp(a, "roles") == 0) {
        rc = user_roles(&c, argc, argv);
    } else if (strcmp(a, "disable") == 0 || strcmp(a, "enable") == 0) {
        rc = user_enable(&c, argc, argv, strcmp(a, "disable") == 0);
    } else if (strcmp(a, "totp-reset") == 0) {
        rc = user_totp_reset(&c, argc, argv);
    } else if (strcmp(a, "qualify") == 0) {
        rc = user_qualify(&c, argc, argv);
    } else {
        fprintf(stderr, "cloudpacs user: unknown action \"%s\"\n", a);
        cli_user_usage(stderr);
        return CLI_EXIT_USAGE;
    }
    if (c.help)
        cli_user_usage(stdout);
    cli_identity_close(&c);
    return rc;
}
