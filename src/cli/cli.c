/*
 * cli.c - the table of subcommands.
 */
#include "cli/cli.h"

#include <stddef.h>

static const cli_command commands[] = {
    { "dump", "print the elements of DICOM files (text or DICOM JSON)", cli_dump_run,
      cli_dump_usage },
    { NULL, NULL, NULL, NULL },
};

const cli_command *cli_commands(void)
{
    return commands;
}
