/*
 * main.c - `cloudpacs <command> [options]`.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

#ifndef CLOUDPACS_VERSION
#define CLOUDPACS_VERSION "0.1.0"
#endif

static void main_usage(FILE *out)
{
    fprintf(out, "usage: cloudpacs <command> [options]\n\n"
                 "cloudpacs is an internet medical-imaging cloud.\n\ncommands:\n");
    for (const cli_command *cmd = cli_commands(); cmd->name != NULL; cmd++)
        fprintf(out, "  %-12s %s\n", cmd->name, cmd->summary);
    fprintf(out, "\n`cloudpacs <command> --help` describes a command.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        main_usage(stderr);
        return CLI_EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        main_usage(stdout);
        return CLI_EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("cloudpacs %s\n", CLOUDPACS_VERSION);
        return CLI_EXIT_OK;
    }

    for (const cli_command *cmd = cli_commands(); cmd->name != NULL; cmd++) {
        if (strcmp(argv[1], cmd->name) != 0)
            continue;
        if (argc > 2 && (strcmp(argv[2], "--help") == 0 || strcmp(argv[2], "-h") == 0)) {
            cmd->usage(stdout);
            return CLI_EXIT_OK;
        }
        return cmd->run(argc - 1, argv + 1);
    }

    fprintf(stderr, "cloudpacs: unknown command \"%s\"\n", argv[1]);
    main_usage(stderr);
    return CLI_EXIT_USAGE;
}
