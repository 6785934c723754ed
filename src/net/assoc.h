/*
 * assoc.h - one DICOM association driven through the upper layer state
 * machine of PS3.8 section 9.2 (Table 9-10), over a transport given as a
 * small table of functions: plain TCP here, TLS later, memory in the tests.
 *
 * The machine is a table: (state, event) -> action, each action returning
 * the next state (docs/upper-layer.md). Events come from two sides:
 *
 *   - the peer: assoc_step reads one PDU (pdu_read_header, then a body no
 *     longer than the limit of the state), or notices that the transport
 *     closed or a timer expired, runs the action, and returns what the
 *     service user must know (an indication: assoc_ind);
 *   - the local user: the assoc_request, assoc_answer, assoc_send_pdata,
 *     assoc_release_*, assoc_abort primitives.
 *
 * Timers: ARTIM (PS3.8 9.1.5) runs while a freshly accepted connection
 * owes its A-ASSOCIATE-RQ and after we rejected, released or aborted until
 * the peer closes (Sta13); the idle timeout bounds a silent established
 * association, which is then aborted (A-ABORT, service user).
 *
 * Negotiation (PS3.7 Annex D, PS3.8 9.3.2): assoc_answer checks the -RQ
 * against an assoc_policy in the order of docs/upper-layer.md and sends
 * the -AC (presentation contexts, transfer syntaxes, maximum length, role
 * selection, asynchronous window 1/1, user identity) or the -RJ.
 *
 * The module does not log: it returns statuses and keeps a detail of the
 * last failure (assoc_detail) for the server to log with its context.
 */
#ifndef CP_NET_ASSOC_H
#define CP_NET_ASSOC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "net/pdu.h"

/*
 * A byte transport. Timeouts are in milliseconds; -1 waits for ever.
 * read: up to len bytes; CP_OK with *got == 0 means the peer closed;
 * CP_ERR_AGAIN means the time passed with nothing read; CP_ERR_IO a broken
 * connection. write: all len bytes or a failure (CP_ERR_AGAIN on timeout).
 * shutdown closes the connection (the transport's state is the caller's).
 */
typedef struct assoc_transport {
    cp_status (*read)(void *ctx, void *buf, size_t len, size_t *got, int timeout_ms);
    cp_status (*write)(void *ctx, const void *data, size_t len, int timeout_ms);
    void (*shutdown)(void *ctx);
} assoc_transport;

/* Plain TCP: ctx is an assoc_tcp whose descriptor the caller owns. */
typedef struct assoc_tcp {
    int fd;
} assoc_tcp;

extern const assoc_transport assoc_tcp_transport;

/* Sets TCP_NODELAY (and keep-alive) on a connected socket; every socket of ours gets it. */
cp_status assoc_tcp_tune(int fd);

/*
 * Added for TLS (PS3.15 B.1): a layer put over a connected socket before
 * the association starts. open runs the handshake within timeout_ms (ARTIM
 * for an acceptor) and gives the transport to use; on failure it writes the
 * reason into detail and the caller closes the socket. close frees what
 * open made (the socket stays the caller's). open == NULL: plain TCP.
 */
typedef struct assoc_wrap {
    cp_status (*open)(void *ctx, int fd, const char *peer_host, int timeout_ms,
                      const assoc_transport **tp, void **tp_ctx, char *detail,
                      size_t detail_size);
    void (*close)(void *tp_ctx);
    /* Whether bytes already read from the socket wait inside the layer. */
    bool (*pending)(void *tp_ctx);
    void *ctx;
} assoc_wrap;

/* States (PS3.8 Table 9-1). */
typedef enum assoc_state {
    ASSOC_STA1 = 1, ASSOC_STA2, ASSOC_STA3, ASSOC_STA4, ASSOC_STA5, ASSOC_STA6,
    ASSOC_STA7, ASSOC_STA8, ASSOC_STA9, ASSOC_STA10, ASSOC_STA11, ASSOC_STA12,
    ASSOC_STA13
} assoc_state;

/* Events (PS3.8 Table 9-2). */
typedef enum assoc_event {
    ASSOC_EVT1 = 1, ASSOC_EVT2, ASSOC_EVT3, ASSOC_EVT4, ASSOC_EVT5, ASSOC_EVT6,
    ASSOC_EVT7, ASSOC_EVT8, ASSOC_EVT9, ASSOC_EVT10, ASSOC_EVT11, ASSOC_EVT12,
    ASSOC_EVT13, ASSOC_EVT14, ASSOC_EVT15, ASSOC_EVT16, ASSOC_EVT17, ASSOC_EVT18,
    ASSOC_EVT19
} assoc_event;

/* What an action tells the service user. */
typedef enum assoc_ind {
    ASSOC_IND_NONE,             /* nothing for the user (a PDU ignored in Sta13) */
    ASSOC_IND_ASSOCIATE_RQ,     /* Sta3: call assoc_answer (or assoc_reject) */
    ASSOC_IND_ACCEPTED,         /* requestor: the -AC arrived, Sta6 */
    ASSOC_IND_REJECTED,         /* requestor: the -RJ arrived; acceptor: AE-6 sent
                                   one (assoc_rejection, assoc_detail) */
    ASSOC_IND_PDATA,            /* a P-DATA-TF: assoc_pdvs */
    ASSOC_IND_RELEASE_RQ,       /* the peer asks to release: assoc_release_response */
    ASSOC_IND_RELEASED,         /* our release was confirmed; the transport is closed */
    ASSOC_IND_COLLISION,        /* release collision: see assoc_release_response */
    ASSOC_IND_ABORTED,          /* A-ABORT from the peer, or A-P-ABORT */
    ASSOC_IND_TIMEOUT,          /* the idle timeout aborted the association */
    ASSOC_IND_CLOSED            /* the transport is closed, Sta1 */
} assoc_ind;

/* Services the acceptor negotiates (bits of assoc_policy.services). */
enum {
    ASSOC_SERVICE_VERIFICATION = 1u << 0,
    ASSOC_SERVICE_STORAGE = 1u << 1,
    ASSOC_SERVICE_QUERY = 1u << 2,
    ASSOC_SERVICE_RETRIEVE = 1u << 3,
};

/* The identity hook's answer. */
typedef enum assoc_identity_result {
    ASSOC_IDENTITY_ACCEPT,
    ASSOC_IDENTITY_REJECT
} assoc_identity_result;

/*
 * Checks a User Identity Negotiation request (PS3.7 D.3.3.7) from
 * calling_ae. On accept it may write a server response of at most
 * *response_len bytes into response and set *response_len (0: none); it is
 * sent only when rq->response_requested.
 */
typedef assoc_identity_result (*assoc_identity_fn)(void *ctx, const char *calling_ae,
                                                   const pdu_identity_rq *rq,
                                                   uint8_t *response, size_t *response_len);

/*
 * The acceptor's rules. calling_allowed == NULL lets every calling AE in.
 * identity == NULL accepts every identity (with an empty positive response
 * when one is requested, which requestors such as DCMTK insist on).
 * over_limit makes AE-6 reject the request as transient, "local limit
 * exceeded".
 */
typedef struct assoc_policy {
    const char *ae_title;
    bool (*calling_allowed)(void *ctx, const char *calling_ae);
    void *calling_ctx;
    unsigned services;                  /* ASSOC_SERVICE_* */
    assoc_identity_fn identity;
    void *identity_ctx;
    bool over_limit;
} assoc_policy;

/* Timers and sizes; zero fields take the defaults of core/limits.h. */
typedef struct assoc_params {
    uint32_t max_pdu;                   /* our Maximum Length (receive) */
    int artim_ms;
    int idle_ms;
} assoc_params;

/* An accepted presentation context. */
typedef struct assoc_context {
    uint8_t id;
    char abstract_syntax[PDU_UID_SIZE];
    char transfer_syntax[PDU_UID_SIZE];
    bool scu_role;                      /* the requestor may act as SCU */
    bool scp_role;                      /* the requestor may act as SCP */
} assoc_context;

typedef struct assoc assoc;

/* A new association over transport and ctx (not owned). NULL on OOM. */
assoc *assoc_create(const assoc_transport *tp, void *tp_ctx, const assoc_params *params);

void assoc_destroy(assoc *a);

assoc_state assoc_get_state(const assoc *a);

/* Whether the transport is closed (the machine is back in Sta1). */
bool assoc_is_closed(const assoc *a);

/* Whether the association ended because ARTIM expired (Evt18). */
bool assoc_artim_expired(const assoc *a);

/* The detail of the last failure or rejection, for the log; never NULL. */
const char *assoc_detail(const assoc *a);

/*
 * Runs one event of the table directly (for tests). Local events that need
 * arguments use those of the primitives below.
 */
cp_status assoc_dispatch(assoc *a, assoc_event ev, assoc_ind *ind);

/*
 * Acceptor: the transport connection was accepted (Evt5): Sta2, ARTIM
 * started. policy (kept, not copied) decides in AE-6 and assoc_answer.
 */
cp_status assoc_start_acceptor(assoc *a, const assoc_policy *policy);

/*
 * Waits for the next event from the peer or a timer and runs it. *ind says
 * what happened. Fails only when the transport failed in a way the machine
 * already handled (the association is then closed) or on CP_ERR_NOMEM.
 */
cp_status assoc_step(assoc *a, assoc_ind *ind);

/* The A-ASSOCIATE-RQ received (after ASSOC_IND_ASSOCIATE_RQ), or NULL. */
const pdu_assoc *assoc_request_pdu(const assoc *a);

/* The PDVs of the P-DATA-TF just indicated, valid until the next step. */
const pdu_pdata *assoc_pdvs(const assoc *a);

/*
 * Acceptor, Sta3: decides on the request as docs/upper-layer.md says and
 * sends the -AC (Evt7) or the -RJ (Evt8). *accepted tells which; after a
 * rejection assoc_rejection gives what was sent and assoc_detail why.
 */
cp_status assoc_answer(assoc *a, bool *accepted);

/* Acceptor, Sta3: sends an A-ASSOCIATE-RJ (Evt8). */
cp_status assoc_reject(assoc *a, pdu_reject_result result, pdu_reject_source source,
                       uint8_t reason);

/*
 * Requestor: with the transport already connected (Evt1 and Evt2), sends
 * rq (Evt1, AE-2) and waits for the -AC or -RJ. Returns CP_OK with
 * *ind ACCEPTED or REJECTED, or the failure.
 */
cp_status assoc_request(assoc *a, const pdu_assoc *rq, assoc_ind *ind);

/* The -RJ received by a requestor, or sent by an acceptor. */
const pdu_reject *assoc_rejection(const assoc *a);

/* The accepted context with this ID, or NULL (after negotiation). */
const assoc_context *assoc_find_context(const assoc *a, uint8_t id);

/* Accepted contexts, for a requestor to choose from. */
size_t assoc_context_count(const assoc *a);
const assoc_context *assoc_context_at(const assoc *a, size_t i);

/* The peer's AE title (calling for an acceptor, called for a requestor). */
const char *assoc_calling_ae(const assoc *a);
const char *assoc_called_ae(const assoc *a);

/* The Maximum Length the peer gave (0: no limit). */
uint32_t assoc_peer_max_pdu(const assoc *a);

/*
 * Sends a command or data set fragment (Evt9): len bytes cut into
 * P-DATA-TFs of one PDV that fit the peer's maximum; `last` marks the end
 * of the message.
 */
cp_status assoc_send_pdata(assoc *a, uint8_t pc_id, bool command, const void *data,
                           size_t len, bool last);

/* Evt11: sends A-RELEASE-RQ (requestor or acceptor). */
cp_status assoc_release_request(assoc *a);

/* Evt14: sends A-RELEASE-RP (Sta8, or Sta9 / Sta12 in a collision). */
cp_status assoc_release_response(assoc *a);

/*
 * Requestor: release and wait until confirmed or the association ends.
 * Data arriving meanwhile is dropped. Collisions are resolved.
 */
cp_status assoc_release(assoc *a);

/* Evt15: sends A-ABORT (service user) and drops the association. */
cp_status assoc_abort(assoc *a);

/* Like assoc_abort, with the provider as source and a PS3.8 9.3.8 reason. */
cp_status assoc_abort_provider(assoc *a, pdu_abort_reason reason);

/* Whether the abstract syntax is one the policy's services cover. */
bool assoc_abstract_supported(const char *uid, unsigned services);

#endif
