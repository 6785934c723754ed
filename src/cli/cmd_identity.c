/*
 * cmd_identity.c - the plumbing the identity commands share (see
 * cmd_identity.h): command lines, the directory, the audit trail and the
 * seal key of the data directory (<data_dir>/index.sqlite and
 * <data_dir>/secret.key), failure messages and exit codes.
 *
 * Every change is written to the audit trail as a Security Alert (PS3.15
 * A.5.3.11) by the operator's login. The trail is opened before the
 * directory, so a tool whose trail cannot be opened changes nothing.
 */
#include "cli/cmd_identity.h"

#include <errno.h>
#include <pwd.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "auth/credential.h"
#include "cli/cli.h"

/* Returns the value of option `name` at argv[*i] ("--x v" or "--x=v"), else NULL. */
static const char *opt_value(int argc, char **argv, int *i, const char *name, bool *missing)
{
    size_t n = strlen(name);
    const char *arg = argv[*i];

    if (strncmp(arg, name, n) != 0)
        return NULL;
    if (arg[n] == '=')
        return arg + n + 1;
    if (arg[n] != '\0')
        return NULL;
    if (*i + 1 >= argc) {
        *missing = true;
        return "";
    }
    return argv[++*i];
}

/* Matches argv[*i] against the action's options; false when none matches. */
static bool parse_option(cli_identity_opt *opts, size_t nopts, int argc, char **argv, int *i,
                         bool *missing)
{
    for (size_t k = 0; k < nopts; k++) {
        const char *v;

        if (!opts[k].takes_value) {
            if (strcmp(argv[*i], opts[k].name) != 0)
                continue;
            opts[k].seen = true;
            return true;
        }
        v = opt_value(argc, argv, i, opts[k].name, missing);
        if (v == NULL)
            continue;
        opts[k].value = v;
        opts[k].seen = true;
        return true;
    }
    return false;
}

int cli_identity_parse(cli_identity *c, int argc, char **argv, cli_identity_opt *opts,
                       size_t nopts, size_t min_pos, size_t max_pos)
{
    bool missing = false, only_pos = false;

    for (int i = 2; i < argc; i++) {
        const char *arg = argv[i], *v;

        if (only_pos || arg[0] != '-' || arg[1] == '\0') {
            if (c->npos == max_pos || c->npos == CLI_IDENTITY_POS_MAX) {
                fprintf(stderr, "cloudpacs %s %s: unexpected argument \"%s\"\n", c->command,
                        c->action, arg);
                return CLI_EXIT_USAGE;
            }
            c->pos[c->npos++] = arg;
            continue;
        }
        if (strcmp(arg, "--") == 0) {
            only_pos = true;
        } else if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            c->help = true;
            return CLI_EXIT_OK;
        } else if ((v = opt_value(argc, argv, &i, "--config", &missing)) != NULL) {
            c->config_path = v;
        } else if ((v = opt_value(argc, argv, &i, "--data-dir", &missing)) != NULL) {
            c->data_dir_opt = v;
        } else if (!parse_option(opts, nopts, argc, argv, &i, &missing)) {
            fprintf(stderr, "cloudpacs %s %s: unknown option \"%s\"\n", c->command, c->action,
                    arg);
            return CLI_EXIT_USAGE;
        }
        if (missing) {
            fprintf(stderr, "cloudpacs %s %s: %s needs a value\n", c->command, c->action, arg);
            return CLI_EXIT_USAGE;
        }
    }
    if (c->npos < min_pos) {
        fprintf(stderr, "cloudpacs %s %s: missing argument (see `cloudpacs %s --help`)\n",
                c->command, c->action, c->command);
        return CLI_EXIT_USAGE;
    }
    return CLI_EXIT_OK;
}

/* "cli:" and the login name of the effective user. */
static void operator_name(char out[65])
{
    struct passwd pw, *found = NULL;
    char buf[1024];

    if (getpwuid_r(geteuid(), &pw, buf, sizeof buf, &found) == 0 && found != NULL)
        snprintf(out, 65, "cli:%.60s", found->pw_name);
    else
        snprintf(out, 65, "cli:uid%lu", (unsigned long)geteuid());
}

int cli_identity_fail(const cli_identity *c, cp_status st, const cp_error *err,
                      const char *what)
{
    const char *detail = err != NULL && err->status != CP_OK ? err->detail : "";

    if (st == CP_ERR_FORBIDDEN)
        fprintf(stderr, "cloudpacs %s %s: %s: refused: %s\n", c->command, c->action, what,
                detail[0] != '\0' ? detail : cp_status_summary(st));
    else if (detail[0] != '\0')
        fprintf(stderr, "cloudpacs %s %s: %s: %s (%s)\n", c->command, c->action, what,
                cp_status_summary(st), detail);
    else
        fprintf(stderr, "cloudpacs %s %s: %s: %s\n", c->command, c->action, what,
                cp_status_summary(st));

    switch (st) {
    case CP_ERR_INVALID:
    case CP_ERR_LIMIT:
        return CLI_EXIT_USAGE;
    case CP_ERR_CONFIG:
        return CLI_EXIT_CONFIG;
    case CP_ERR_MALFORMED:
        return CLI_EXIT_DATA;
    case CP_ERR_UNAVAILABLE:
        return CLI_EXIT_UNAVAILABLE;
    default:
        return CLI_EXIT_FAILURE;
    }
}

int cli_identity_open(cli_identity *c, bool with_key)
{
    char path[sizeof c->data_dir + 32];
    uint8_t key[32];
    const char *dir;
    cp_error err;
    cp_status st;

    cp_error_clear(&err);
    operator_name(c->actor);
    if (c->config_path != NULL ? cp_config_load(c->config_path, &c->cfg, &err) != CP_OK
                               : (c->cfg = cp_config_create()) == NULL) {
        char text[CP_ERROR_DETAIL_MAX + 64];

        fprintf(stderr, "cloudpacs %s %s: %s: %s\n", c->command, c->action,
                c->config_path != NULL ? c->config_path : "configuration",
                cp_error_format(&err, text, sizeof text));
        return CLI_EXIT_CONFIG;
    }
    dir = c->data_dir_opt != NULL ? c->data_dir_opt
                                  : cp_config_get(c->cfg, "core", "data_dir", "./cloudpacs-data");
    if (strlen(dir) >= sizeof c->data_dir || dir[0] == '\0') {
        fprintf(stderr, "cloudpacs %s %s: data directory name too long or empty\n",
                c->command, c->action);
        return CLI_EXIT_CONFIG;
    }
    snprintf(c->data_dir, sizeof c->data_dir, "%s", dir);

    /* First set-up: the data directory may not exist yet. */
    if (mkdir(c->data_dir, 0750) != 0 && errno != EEXIST) {
        fprintf(stderr, "cloudpacs %s %s: %s: %s\n", c->command, c->action, c->data_dir,
                strerror(errno));
        return CLI_EXIT_FAILURE;
    }
    if (credential_init() != CP_OK)
        return cli_identity_fail(c, CP_ERR_UNAVAILABLE, NULL, "libsodium");

    snprintf(path, sizeof path, "%s/index.sqlite", c->data_dir);
    st = audit_open_sqlite(path, &c->audit, &err);
    if (st == CP_OK)
        st = directory_open_sqlite(path, &c->dir, &err);
    if (st != CP_OK)
        return cli_identity_fail(c, st, &err, path);

    if (with_key) {
        snprintf(path, sizeof path, "%s/secret.key", c->data_dir);
        st = credential_key_load(path, key, &err);
        if (st != CP_OK)
            return cli_identity_fail(c, st, &err, path);
        directory_set_seal_key(c->dir, key);
        sodium_memzero(key, sizeof key);
    }
    return CLI_EXIT_OK;
}

void cli_identity_close(cli_identity *c)
{
    directory_close(c->dir);
    c->dir = NULL;
    audit_close(c->audit);
    c->audit = NULL;
    cp_config_destroy(c->cfg);
    c->cfg = NULL;
}

int cli_identity_institution(cli_identity *c, const char *code, directory_institution *out)
{
    cp_error err;
    cp_status st;
    char what[DIRECTORY_CODE_MAX + 32];

    cp_error_clear(&err);
    st = directory_institution_by_code(c->dir, code, out, &err);
    if (st == CP_OK)
        return CLI_EXIT_OK;
    snprintf(what, sizeof what, "institution \"%.*s\"", DIRECTORY_CODE_MAX, code);
    return cli_identity_fail(c, st, st == CP_ERR_NOT_FOUND ? NULL : &err, what);
}

void cli_identity_audit(cli_identity *c, const char *type, audit_action action,
                        const char *object_kind, int64_t object_id, const char *object_name,
                        int64_t institution_id, json_t *detail)
{
    audit_record r;
    char *text = NULL;

    memset(&r, 0, sizeof r);
    r.event = AUDIT_SECURITY_ALERT;
    r.action = action;
    r.outcome = AUDIT_SUCCESS;
    snprintf(r.type, sizeof r.type, "%s", type);
    snprintf(r.actor, sizeof r.actor, "%s", c->actor);
    snprintf(r.peer, sizeof r.peer, "local");
    snprintf(r.object_kind, sizeof r.object_kind, "%s", object_kind);

    /* Objects with an id are named by it; AEs by their title. */
    if (object_id > 0)
        snprintf(r.object_id, sizeof r.object_id, "%lld", (long long)object_id);
    else
        snprintf(r.object_id, sizeof r.object_id, "%s",
                 object_name != NULL ? object_name : "");
    r.institution_id = institution_id;
    if (detail != NULL) {
        if (object_id > 0 && object_name != NULL && object_name[0] != '\0')
            json_object_set_new(detail, "name", json_string(object_name));
        text = json_dumps(detail, JSON_COMPACT | JSON_PRESERVE_ORDER);
        json_decref(detail);
    }
    snprintf(r.detail, sizeof r.detail, "%s", text != NULL ? text : "");
    free(text);
    if (c->audit == NULL || audit_write(c->audit, &r) != CP_OK)
        fprintf(stderr, "cloudpacs %s %s: the audit record could not be queued\n", c->command,
                c->action);
}

const char *cli_identity_time(int64_t us, char out[32])
{
    time_t t = (time_t)(us / 1000000);
    struct tm tm;

    out[0] = '\0';
    if (us > 0 && gmtime_r(&t, &tm) != NULL)
        strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return out;
}

int cli_identity_print_json(json_t *value)
{
    char *text;

    if (value == NULL) {
        fprintf(stderr, "cloudpacs: out of memory\n");
        return CLI_EXIT_FAILURE;
    }
    text = json_dumps(value, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(value);
    if (text == NULL) {
        fprintf(stderr, "cloudpacs: out of memory\n");
        return CLI_EXIT_FAILURE;
    }
    printf("%s\n", text);
    free(text);
    return CLI_EXIT_OK;
}

json_t *cli_identity_roles_json(unsigned roles)
{
    json_t *arr = json_array();

    for (unsigned bit = 1; arr != NULL && bit <= ROLE_ALL; bit <<= 1)
        if ((roles & bit) != 0)
            json_array_append_new(arr, json_string(directory_role_name(bit)));
    return arr;
}
