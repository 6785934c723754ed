/*
 * cmd_echo.c - `cloudpacs echo`: a C-ECHO (PS3.7 9.1.5, the Verification
 * service of PS3.4 Annex A) to a DICOM peer, to check that it is reachable
 * and accepts us, as DCMTK's echoscu does; with --tls over the TLS secure
 * transport connection profile of PS3.15 B.1 (net/tls.h).
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "core/limits.h"
#include "net/pdu.h"
#include "net/scu.h"
#include "net/tls.h"

typedef struct echo_args {
    const char *aet;
    const char *aec;
    const char *host;
    long port;
    long timeout;
    long count;
    bool tls;
    tls_config tlsc;
} echo_args;

void cli_echo_usage(FILE *out)
{
    fprintf(out,
        "usage: cloudpacs echo [options] HOST PORT\n"
        "\n"
        "Opens an association with the DICOM peer at HOST PORT and sends it\n"
        "C-ECHO requests (Verification).\n"
        "\n"
        "options:\n"
        "  --aet TITLE    our (calling) AE title (default CLOUDPACS_ECHO)\n"
        "  --aec TITLE    the peer's (called) AE title (default CLOUDPACS)\n"
        "  --timeout S    seconds for connecting and for each answer (default %d)\n"
        "  --count N      echoes on the association (default 1)\n"
        "  --tls          use DICOM over TLS (PS3.15 B.1)\n"
        "  --cert FILE    with --tls: our PEM certificate, presented to the peer\n"
        "  --key FILE     with --tls: its PEM private key\n"
        "  --ca FILE      with --tls: the PEM CAs to verify the peer by (default:\n"
        "                 the system trust store)\n"
        "  -h, --help     this text\n"
        "\n"
        "exit status: 0 when every echo succeeded; 5 when the peer could not be\n"
        "reached or rejected the association; 1 when an echo failed; 2 on bad\n"
        "options.\n", SCU_CONNECT_TIMEOUT_S);
}

static bool parse_long(const char *s, long min, long max, long *out)
{
    char *end;
    long v = strtol(s, &end, 10);

    if (*s == '\0' || *end != '\0' || v < min || v > max)
        return false;
    *out = v;
    return true;
}

static int parse_args(int argc, char **argv, echo_args *a)
{
    int pos = 0;

    a->aet = "CLOUDPACS_ECHO";
    a->aec = "CLOUDPACS";
    a->timeout = SCU_CONNECT_TIMEOUT_S;
    a->count = 1;
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;

        if (strcmp(argv[i], "--aet") == 0 && v != NULL) {
            a->aet = argv[++i];
        } else if (strcmp(argv[i], "--aec") == 0 && v != NULL) {
            a->aec = argv[++i];
        } else if (strcmp(argv[i], "--timeout") == 0 && v != NULL &&
                   parse_long(v, 1, ASSOC_TIMEOUT_MAX_S, &a->timeout)) {
            i++;
        } else if (strcmp(argv[i], "--count") == 0 && v != NULL &&
                   parse_long(v, 1, 65535, &a->count)) {
            i++;
        } else if (strcmp(argv[i], "--tls") == 0) {
            a->tls = true;
        } else if (strcmp(argv[i], "--cert") == 0 && v != NULL) {
            a->tlsc.cert = argv[++i];
        } else if (strcmp(argv[i], "--key") == 0 && v != NULL) {
            a->tlsc.key = argv[++i];
        } else if (strcmp(argv[i], "--ca") == 0 && v != NULL) {
            a->tlsc.ca = argv[++i];
        } else if (argv[i][0] != '-' && pos == 0) {
            a->host = argv[i];
            pos++;
        } else if (argv[i][0] != '-' && pos == 1 && parse_long(argv[i], 1, 65535, &a->port)) {
            pos++;
        } else {
            fprintf(stderr, "cloudpacs echo: bad argument \"%s\"\n", argv[i]);
            return CLI_EXIT_USAGE;
        }
    }
    if (pos != 2) {
        cli_echo_usage(stderr);
        return CLI_EXIT_USAGE;
    }
    if (!pdu_ae_is_valid(a->aet, strlen(a->aet)) || !pdu_ae_is_valid(a->aec, strlen(a->aec))) {
        fprintf(stderr, "cloudpacs echo: AE titles are 1-16 characters without "
                        "backslash or control characters\n");
        return CLI_EXIT_USAGE;
    }
    return CLI_EXIT_OK;
}

static double elapsed_ms(const struct timespec *t0)
{
    struct timespec t1;

    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) * 1e3 + (double)(t1.tv_nsec - t0->tv_nsec) / 1e6;
}

int cli_echo_run(int argc, char **argv)
{
    static const char *const ts[] = { "1.2.840.10008.1.2.1", "1.2.840.10008.1.2" };
    scu_proposal prop = { SCU_VERIFICATION_UID, ts, 2 };
    echo_args a;
    scu_config cfg;
    scu *u = NULL;
    tls_ctx *tls = NULL;
    cp_error err;
    struct timespec t0;
    int rc;

    memset(&a, 0, sizeof a);
    rc = parse_args(argc, argv, &a);
    if (rc != CLI_EXIT_OK)
        return rc;

    memset(&cfg, 0, sizeof cfg);
    cfg.calling_ae = a.aet;
    cfg.called_ae = a.aec;
    cfg.host = a.host;
    cfg.port = (uint16_t)a.port;
    cfg.connect_timeout_ms = (int)a.timeout * 1000;
    cfg.params.artim_ms = (int)a.timeout * 1000;
    cfg.params.idle_ms = (int)a.timeout * 1000;
    cp_error_clear(&err);
    if (a.tls && tls_create(&a.tlsc, false, &tls, &err) != CP_OK) {
        fprintf(stderr, "cloudpacs echo: %s\n", err.detail);
        return CLI_EXIT_USAGE;
    }
    if (tls != NULL)
        cfg.wrap = tls_wrap(tls);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (scu_connect(&cfg, &prop, 1, &u, &err) != CP_OK) {
        fprintf(stderr, "cloudpacs echo: %s port %ld: %s\n", a.host, a.port, err.detail);
        tls_destroy(tls);
        return CLI_EXIT_UNAVAILABLE;
    }

    for (long i = 0; i < a.count && rc == CLI_EXIT_OK; i++) {
        uint16_t status = 0xFFFF;

        if (scu_echo(u, &status, &err) != CP_OK) {
            fprintf(stderr, "cloudpacs echo: %s\n", err.detail);
            rc = CLI_EXIT_FAILURE;
        } else if (status != 0x0000) {
            fprintf(stderr, "cloudpacs echo: C-ECHO status 0x%04x\n", status);
            rc = CLI_EXIT_FAILURE;
        }
    }
    if (rc == CLI_EXIT_OK && scu_release(u, &err) != CP_OK) {
        fprintf(stderr, "cloudpacs echo: %s\n", err.detail);
        rc = CLI_EXIT_FAILURE;
    }
    if (rc == CLI_EXIT_OK)
        printf("C-ECHO %s port %ld (%s -> %s): success, %ld echo%s in %.1f ms\n", a.host,
               a.port, a.aet, a.aec, a.count, a.count == 1 ? "" : "es", elapsed_ms(&t0));
    scu_destroy(u);
    tls_destroy(tls);
    return rc;
}
