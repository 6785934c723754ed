/*
 * cmd_identity.h - what the identity commands (`institution`, `user`, `ae`,
 * `token`) share, private to them: their command lines, opening the
 * directory and the audit trail of the data directory, failures reported
 * with the exit codes of cli.h, and one audit record per change.
 *
 * These tools are run on the server by its operator: they act as the
 * service principal and are recorded in the audit trail as "cli:<login>".
 */
#ifndef CP_CLI_CMD_IDENTITY_H
#define CP_CLI_CMD_IDENTITY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth/audit.h"
#include "auth/directory.h"
#include "core/config.h"
#include "core/status.h"

/* Positional arguments one action takes at most. */
#define CLI_IDENTITY_POS_MAX 4

/* One option an action accepts; `value` and `seen` are filled by the parser. */
typedef struct cli_identity_opt {
    const char *name;                   /* "--institution" */
    bool takes_value;
    const char *value;
    bool seen;
} cli_identity_opt;

typedef struct cli_identity {
    const char *command;                /* "user" */
    const char *action;                 /* "add" */
    const char *config_path;            /* --config */
    const char *data_dir_opt;           /* --data-dir */
    bool help;
    const char *pos[CLI_IDENTITY_POS_MAX];
    size_t npos;

    cp_config *cfg;
    directory *dir;
    audit_log *audit;
    char data_dir[2048];
    char actor[65];
} cli_identity;

/*
 * Reads argv[2...] (argv[0] the command, argv[1] the action): --help,
 * --config and --data-dir, the action's options and between min_pos and
 * max_pos positional arguments. CLI_EXIT_OK, or CLI_EXIT_USAGE after a
 * message on stderr.
 */
int cli_identity_parse(cli_identity *c, int argc, char **argv, cli_identity_opt *opts,
                       size_t nopts, size_t min_pos, size_t max_pos);

/*
 * Loads the configuration, opens the directory (and the audit trail) of
 * the data directory, with the seal key when with_key. A CLI exit code.
 */
int cli_identity_open(cli_identity *c, bool with_key);

/* Commits the audit records and closes everything; safe after a failed open. */
void cli_identity_close(cli_identity *c);

/*
 * Reports a failure on stderr ("cloudpacs user add: <what>: <detail>") and
 * returns the exit code that fits the status.
 */
int cli_identity_fail(const cli_identity *c, cp_status st, const cp_error *err,
                      const char *what);

/* The institution with this code, or a message and CLI_EXIT_FAILURE. */
int cli_identity_institution(cli_identity *c, const char *code, directory_institution *out);

/*
 * Records a change made by the operator (event Security Alert, PS3.15
 * A.5.3.11: security configuration and user attributes). detail is a JSON
 * object or NULL; it is released.
 */
void cli_identity_audit(cli_identity *c, const char *type, audit_action action,
                        const char *object_kind, int64_t object_id, const char *object_name,
                        int64_t institution_id, json_t *detail);

/* Microseconds since 1970 as ISO 8601 UTC ("2026-12-03T18:00:00Z"); "" for 0. */
const char *cli_identity_time(int64_t us, char out[32]);

/* Prints a JSON value on stdout (indented, then a newline) and releases it. */
int cli_identity_print_json(json_t *value);

/* A role mask as a JSON array of role names. */
json_t *cli_identity_roles_json(unsigned roles);

#endif
