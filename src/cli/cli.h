/*
 * cli.h - the `cloudpacs` command and its subcommands.
 *
 * Exit codes are part of the interface: scripts rely on them.
 */
#ifndef CP_CLI_H
#define CP_CLI_H

#include <stdio.h>

enum {
    CLI_EXIT_OK = 0,            /* everything asked for was done */
    CLI_EXIT_FAILURE = 1,       /* an operation failed (I/O, a refused request) */
    CLI_EXIT_USAGE = 2,         /* bad command line */
    CLI_EXIT_DATA = 3,          /* an input was malformed (a DICOM file, a config) */
    CLI_EXIT_CONFIG = 4,        /* the configuration is wrong */
    CLI_EXIT_UNAVAILABLE = 5,   /* a peer or service could not be reached */
};

typedef struct cli_command {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv);  /* argv[0] is the subcommand's name */
    void (*usage)(FILE *out);
} cli_command;

int cli_dump_run(int argc, char **argv);
void cli_dump_usage(FILE *out);

int cli_import_run(int argc, char **argv);
void cli_import_usage(FILE *out);

int cli_serve_run(int argc, char **argv);
void cli_serve_usage(FILE *out);

int cli_echo_run(int argc, char **argv);
void cli_echo_usage(FILE *out);

int cli_send_run(int argc, char **argv);
void cli_send_usage(FILE *out);

int cli_find_run(int argc, char **argv);
void cli_find_usage(FILE *out);

int cli_changes_run(int argc, char **argv);
void cli_changes_usage(FILE *out);

int cli_audit_run(int argc, char **argv);
void cli_audit_usage(FILE *out);

int cli_institution_run(int argc, char **argv);
void cli_institution_usage(FILE *out);

int cli_user_run(int argc, char **argv);
void cli_user_usage(FILE *out);

int cli_ae_run(int argc, char **argv);
void cli_ae_usage(FILE *out);

int cli_token_run(int argc, char **argv);
void cli_token_usage(FILE *out);

int cli_intake_run(int argc, char **argv);
void cli_intake_usage(FILE *out);

/* The command table, ending with an entry whose name is NULL. */
const cli_command *cli_commands(void);

#endif
