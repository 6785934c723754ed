/*
 * scp.h - the DICOM server: a listening socket, one thread per association
 * (bounded), association negotiation (PS3.8, through assoc.h) and the
 * DIMSE services it performs as SCP (PS3.4 Annex A Verification, Annex B
 * Storage; PS3.7 9.1.1 C-STORE and 9.1.5 C-ECHO).
 *
 * C-STORE streams: every PDV of the data set goes to the store consumer as
 * it arrives, so an instance of any size costs one PDU of memory. The
 * consumer is a small table of functions; the server wires the archive
 * pipeline behind it (cli/cmd_serve.c), tests may wire anything.
 *
 * The server logs one line per association event and per failed operation
 * (with the association id, the AE titles, the peer and the SOP UIDs as
 * the thread's log context); it never logs patient data.
 */
#ifndef CP_NET_SCP_H
#define CP_NET_SCP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "net/assoc.h"
#include "net/dimse.h"
#include "net/pdu.h"

/* What a remote AE may do (bits of scp_remote_ae.allow). */
enum {
    SCP_ALLOW_ECHO = 1u << 0,
    SCP_ALLOW_STORE = 1u << 1,
    SCP_ALLOW_QUERY = 1u << 2,
    SCP_ALLOW_RETRIEVE = 1u << 3,
};

/* A known remote AE ([ae.NAME] in the configuration). */
typedef struct scp_remote_ae {
    char title[PDU_AE_SIZE];
    char host[256];
    uint16_t port;
    unsigned allow;                     /* SCP_ALLOW_*; echo is always allowed */
} scp_remote_ae;

/* What a C-STORE consumer is told about the instance arriving. */
typedef struct scp_store_info {
    uint64_t assoc_id;
    const char *calling_ae;
    const char *called_ae;
    const char *peer;                   /* "ip:port" */
    const char *sop_class_uid;          /* from the C-STORE-RQ */
    const char *sop_instance_uid;
    const char *transfer_syntax_uid;    /* of the presentation context */
    uint16_t message_id;
    const char *move_originator_ae;     /* "" unless a C-MOVE caused it */
} scp_store_info;

/*
 * Where C-STORE data sets go. begin starts one instance (on failure it
 * sets *status to the DIMSE status to answer); write gets the data set
 * bytes in order (a failure makes the server stop writing, abort the
 * operation and answer A700 out of resources, after draining the message);
 * finish completes it, frees the operation and returns the C-STORE-RSP
 * status, with an optional Error Comment (at most DIMSE_COMMENT_SIZE - 1
 * characters, no patient data); abort throws an unfinished one away.
 * Several associations call these at once, each with its own op.
 */
typedef struct scp_store_consumer {
    cp_status (*begin)(void *ctx, const scp_store_info *info, void **op, uint16_t *status);
    cp_status (*write)(void *op, const void *data, size_t len);
    uint16_t (*finish)(void *op, char *comment, size_t comment_size);
    void (*abort)(void *op);
    void *ctx;
} scp_store_consumer;

typedef struct scp_config {
    char ae_title[PDU_AE_SIZE];
    const char *bind;                   /* address to listen on; NULL: 127.0.0.1 */
    uint16_t port;                      /* 0: any free port (see scp_port) */
    unsigned max_associations;          /* 0: SCP_ASSOCIATIONS_DEFAULT */
    assoc_params params;                /* max PDU, ARTIM and idle timeouts */
    /* Callers not in `aes` may associate (to echo and store) only when set. */
    bool accept_unknown;
    const scp_remote_ae *aes;           /* copied by scp_create */
    size_t ae_count;
    scp_store_consumer store;           /* begin == NULL: C-STORE refused (A700) */
    assoc_identity_fn identity;         /* NULL: identities are not checked */
    void *identity_ctx;
} scp_config;

typedef struct scp scp;

/* A server for cfg (copied). Nothing is bound yet. */
cp_status scp_create(const scp_config *cfg, scp **out, cp_error *err);

/* Binds and listens (IPv4 or IPv6 by the address given). */
cp_status scp_listen(scp *s, cp_error *err);

/* The port listened on (useful when the configuration said 0). */
uint16_t scp_port(const scp *s);

/*
 * Accepts and serves associations until scp_stop; then stops accepting,
 * lets open associations end for up to SCP_SHUTDOWN_DEADLINE_S seconds,
 * closes those that did not, and returns once every thread has ended.
 */
cp_status scp_run(scp *s, cp_error *err);

/* Asks scp_run to return. Async-signal-safe: may be called from a handler. */
void scp_stop(scp *s);

/* Frees the server; scp_run must have returned. */
void scp_destroy(scp *s);

/* Associations being served now (for tests and status pages). */
unsigned scp_active(scp *s);

/* Parses "store,query,retrieve" (also "echo", "all", "none") into SCP_ALLOW_* bits. */
cp_status scp_parse_allow(const char *text, unsigned *out);

#endif
