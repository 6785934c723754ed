/*
 * scp.h - the DICOM server: a listening socket, one thread per association
 * (bounded), association negotiation (PS3.8, through assoc.h) and the
 * DIMSE services it performs as SCP (PS3.4 Annex A Verification, Annex B
 * Storage; PS3.7 9.1.1 C-STORE and 9.1.5 C-ECHO), and the frame that
 * query/retrieve (Annex C: C-FIND, C-MOVE, C-GET, C-CANCEL) runs in, through
 * scp_qr_service (net/qr.h implements it over the index and the store).
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
    void *identity;                     /* added: the authoriser's, or NULL */
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

/*
 * Added for query/retrieve (PS3.4 C.4): a C-FIND, C-MOVE or C-GET whose
 * identifier has arrived whole. The service's run is called on the
 * association's thread with it; run answers through the scp_qr_* calls
 * below (pending responses, the final one, C-STORE sub-operations on the
 * same association for C-GET) and returns when the operation is over.
 */
typedef struct scp_qr_call scp_qr_call;

typedef struct scp_qr_service {
    void (*run)(void *ctx, scp_qr_call *call);  /* NULL: FIND/MOVE/GET not offered */
    void *ctx;
} scp_qr_service;

/* Sub-operation counts of a C-MOVE or C-GET response (PS3.7 9.1.3, 9.1.4). */
typedef struct scp_qr_counts {
    bool present;
    uint16_t remaining;                 /* sent with pending responses only */
    uint16_t completed;
    uint16_t failed;
    uint16_t warning;
} scp_qr_counts;

/*
 * Added for metrics: what the server tells an observer as it happens, from
 * the association threads (so the callbacks must be thread-safe and quick).
 * on_association reports each negotiation's result, and the abort of an
 * accepted association; on_close the end of an accepted one, however it
 * ended; on_dimse each final response sent (its request's Command Field
 * and the status); on_bytes the PDV bytes of each P-DATA-TF received.
 * Any member may be NULL.
 */
typedef enum {
    SCP_ASSOC_ACCEPTED,
    SCP_ASSOC_REJECTED,
    SCP_ASSOC_ABORTED,
} scp_assoc_result;

typedef struct scp_events {
    void (*on_association)(void *ctx, scp_assoc_result result);
    void (*on_close)(void *ctx);
    void (*on_dimse)(void *ctx, uint16_t command_field, uint16_t status);
    void (*on_bytes)(void *ctx, uint64_t bytes);
    void *ctx;
} scp_events;

/*
 * Added for authorisation: who asks. Once per association whose request
 * passed the AE rules (our called AE title, the application context), and
 * before any answer is sent, the authoriser is told who calls, from where,
 * and with what User Identity (PS3.7 D.3.3.7.1) if the requestor sent one.
 * The byte fields point into the request and are not NUL-terminated.
 */
typedef struct scp_assoc_info {
    uint64_t assoc_id;
    const char *calling_ae;
    const char *called_ae;
    const char *peer;                   /* "ip:port" */
    bool configured;                    /* the calling AE is one of scp_config.aes */
    bool has_identity;
    uint8_t identity_type;              /* pdu_identity_type */
    bool identity_response_requested;
    const uint8_t *identity_primary;    /* user name (types 1 and 2), ticket, ... */
    size_t identity_primary_len;
    const uint8_t *identity_secondary;  /* passcode (type 2) */
    size_t identity_secondary_len;
} scp_assoc_info;

/*
 * The authoriser's answer. A rejection is an A-ASSOCIATE-RJ (PS3.8 9.3.4,
 * Table 9-21): REJECT is permanent, service-user, no reason given;
 * REJECT_CALLING_AE permanent, service-user, calling AE title not
 * recognised; REJECT_TRANSIENT transient, service-provider (presentation),
 * temporary congestion: what it needs to decide (a directory, a session
 * store) is away for now and the requestor may try again later.
 */
typedef enum scp_auth_result {
    SCP_AUTH_ACCEPT,
    SCP_AUTH_REJECT,
    SCP_AUTH_REJECT_CALLING_AE,
    SCP_AUTH_REJECT_TRANSIENT,
} scp_auth_result;

/*
 * authorise decides; on accept it may change *allow (SCP_ALLOW_* bits,
 * given as the AE rules set them) and set *identity, an opaque pointer the
 * server keeps for the association, passes to the store consumer
 * (scp_store_info.identity) and to query/retrieve (scp_qr_identity), and
 * hands to release once the association is over (after the last store
 * operation ended), however it ended. Called on association threads, so
 * both must be thread-safe. authorise == NULL: no authoriser, the AE rules
 * alone decide. With one, calling AEs unknown to the configuration reach
 * it too (configured false): it decides for them, accept_unknown or not.
 */
typedef struct scp_authoriser {
    scp_auth_result (*authorise)(void *ctx, const scp_assoc_info *info, unsigned *allow,
                                 void **identity);
    void (*release)(void *ctx, void *identity);
    void *ctx;
} scp_authoriser;

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
    scp_qr_service qr;                  /* added for query/retrieve */
    /* Added for TLS: wraps each accepted socket (net/tls.h); open NULL: plain. */
    assoc_wrap wrap;
    scp_events events;                  /* added for metrics; zeroed: none */
    scp_authoriser authoriser;          /* added for authorisation; zeroed: none */
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

/* --- added for query/retrieve: what scp_qr_service.run works with ------- */

/* The request command, its context and what the caller may do. */
const dimse_command *scp_qr_command(const scp_qr_call *c);
const assoc_context *scp_qr_context(const scp_qr_call *c);
unsigned scp_qr_allow(const scp_qr_call *c);
const char *scp_qr_calling_ae(const scp_qr_call *c);
const char *scp_qr_called_ae(const scp_qr_call *c);
uint64_t scp_qr_assoc_id(const scp_qr_call *c);

/* Added for authorisation: the association's identity (scp_authoriser), or NULL. */
void *scp_qr_identity(const scp_qr_call *c);

/* Added for the audit trail: the peer's "ip:port". */
const char *scp_qr_peer(const scp_qr_call *c);

/* The identifier's bytes, in the context's transfer syntax. */
const uint8_t *scp_qr_identifier(const scp_qr_call *c, size_t *len);

/* A configured remote AE by title (C-MOVE destinations), or NULL. */
const scp_remote_ae *scp_qr_remote_ae(const scp_qr_call *c, const char *title);

/*
 * Sends a response: status, counts (NULL: none), an identifier of len
 * bytes in the context's transfer syntax (NULL: none) and an Error Comment
 * for failures (NULL: none).
 */
cp_status scp_qr_respond(scp_qr_call *c, uint16_t status, const scp_qr_counts *counts,
                         const void *ident, size_t len, const char *comment);

/*
 * Whether the peer sent a C-CANCEL-RQ for this operation: reads what has
 * already arrived without waiting. False once the association broke too
 * (scp_qr_broken then tells).
 */
bool scp_qr_cancelled(scp_qr_call *c);
bool scp_qr_broken(const scp_qr_call *c);

/*
 * C-GET sub-operations on the calling association (PS3.4 C.4.3.3): the
 * context accepted for a storage SOP class in transfer syntax ts, with the
 * SCP role for the requestor (0 when none); sending a C-STORE-RQ command
 * (message ID filled in) and its data set; waiting for its C-STORE-RSP
 * (a C-CANCEL-RQ arriving meanwhile is remembered for scp_qr_cancelled).
 */
uint8_t scp_qr_store_context(const scp_qr_call *c, const char *sop_class, const char *ts);
cp_status scp_qr_store_command(scp_qr_call *c, uint8_t pc_id, dimse_command *cmd);
cp_status scp_qr_store_data(scp_qr_call *c, uint8_t pc_id, const void *data, size_t len,
                            bool last);
cp_status scp_qr_store_wait(scp_qr_call *c, dimse_command *rsp);

#endif
