/*
 * cli.c - the table of subcommands.
 */
#include "cli/cli.h"

#include <stddef.h>

static const cli_command commands[] = {
    { "dump", "print the elements of DICOM files (text or DICOM JSON)", cli_dump_run,
      cli_dump_usage },
    { "import", "store DICOM files and folders in the archive", cli_import_run,
      cli_import_usage },
    { "serve", "run the cloudpacs services (today: the DICOM service)", cli_serve_run,
      cli_serve_usage },
    { "echo", "check a DICOM peer with C-ECHO", cli_echo_run, cli_echo_usage },
    { "send", "send DICOM files or a stored study with C-STORE", cli_send_run,
      cli_send_usage },
    { "find", "query a DICOM peer with C-FIND", cli_find_run, cli_find_usage },
    { "changes", "list the archive's change log", cli_changes_run, cli_changes_usage },
    { "audit", "verify, export and list the audit trail", cli_audit_run,
      cli_audit_usage },
    { "institution", "add, list and change the institutions of the directory",
      cli_institution_run, cli_institution_usage },
    { "user", "add and manage users: passwords, roles, second factor", cli_user_run,
      cli_user_usage },
    { "ae", "add, list and remove the DICOM application entities", cli_ae_run,
      cli_ae_usage },
    { "token", "create, list and revoke API tokens for machines", cli_token_run,
      cli_token_usage },
    { "intake", "status of the SMB and folder intake and of the exports", cli_intake_run,
      cli_intake_usage },
    { NULL, NULL, NULL, NULL },
};

const cli_command *cli_commands(void)
{
    return commands;
}
