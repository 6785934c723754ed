/*
 * scu.h - the association requestor (PS3.8 9.1, 9.3.2) and the DIMSE
 * services cloudpacs uses as SCU: C-ECHO (PS3.7 9.1.5), C-STORE (9.1.1)
 * for sending and C-MOVE, C-FIND (9.1.2) for `cloudpacs find`, on the
 * same calls: connect with the contexts to propose, send a command (and a
 * data set streamed in pieces), wait for the response, release.
 */
#ifndef CP_NET_SCU_H
#define CP_NET_SCU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "net/assoc.h"
#include "net/dimse.h"

/* The Verification SOP Class (PS3.4 A.4). */
#define SCU_VERIFICATION_UID "1.2.840.10008.1.1"

typedef struct scu_config {
    const char *calling_ae;             /* ours */
    const char *called_ae;              /* theirs */
    const char *host;                   /* name or address */
    uint16_t port;
    int connect_timeout_ms;             /* 0: SCU_CONNECT_TIMEOUT_S */
    assoc_params params;                /* max PDU, timeouts */
    /* Added for TLS: wraps the connected socket (net/tls.h); open NULL: plain. */
    assoc_wrap wrap;
} scu_config;

/* One presentation context to propose. */
typedef struct scu_proposal {
    const char *abstract_syntax;
    const char *const *transfer_syntaxes;
    size_t ts_count;
} scu_proposal;

typedef struct scu scu;

/*
 * Connects and negotiates. Failures: CP_ERR_IO when the peer cannot be
 * reached or broke the handshake; CP_ERR_UNSUPPORTED when it rejected the
 * association (err's detail gives result, source and reason) or accepted
 * none of the contexts. *out is set only on success.
 */
cp_status scu_connect(const scu_config *cfg, const scu_proposal *props, size_t count,
                      scu **out, cp_error *err);

/* The accepted context for an abstract syntax (0 when none), and its transfer syntax. */
uint8_t scu_context_for(const scu *u, const char *abstract_syntax, const char **ts);

/*
 * Added for C-STORE: the accepted context for an abstract syntax in one
 * transfer syntax (0 when none), for a requestor that proposed several
 * contexts of one SOP class in different syntaxes.
 */
uint8_t scu_context_for_ts(const scu *u, const char *abstract_syntax, const char *ts);

/* Added for C-STORE: what the meta group of a Part 10 file says (PS3.10 7.1). */
typedef struct scu_part10_info {
    char sop_class[PDU_UID_SIZE];
    char sop_instance[PDU_UID_SIZE];
    char ts[PDU_UID_SIZE];
    uint64_t dataset_offset;            /* the data set's first byte in the file */
    uint64_t size;                      /* of the file */
} scu_part10_info;

/*
 * Added for C-STORE: reads the meta group of the Part 10 file at path.
 * CP_ERR_MALFORMED when it has none or it lacks the SOP UIDs; CP_ERR_IO when
 * it cannot be read.
 */
cp_status scu_part10_read(const char *path, scu_part10_info *out, cp_error *err);

/*
 * Added for C-STORE (PS3.7 9.1.1): sends the data set of the Part 10 file
 * at path, streamed from the file, on the context accepted for its SOP
 * class in its own transfer syntax; a file in Explicit or Implicit VR
 * Little Endian goes in the other one when only that was accepted (loaded
 * and rewritten by the core writer, up to QR_TRANSCODE_MAX bytes).
 * move_originator_ae (NULL: none) and move_originator_id mark a C-MOVE's
 * sub-operation. *status is the C-STORE-RSP's status. CP_ERR_UNSUPPORTED
 * when no accepted context fits (nothing was sent).
 */
cp_status scu_store_file(scu *u, const char *path, const char *move_originator_ae,
                         uint16_t move_originator_id, uint16_t *status, cp_error *err);

/* A C-ECHO: *status is the response's Status. */
cp_status scu_echo(scu *u, uint16_t *status, cp_error *err);

/*
 * Sends a request command (its MessageID is filled in) on context pc_id,
 * then, when it announces a data set, the caller sends the data set with
 * scu_send_data in pieces, the last one with last set.
 */
cp_status scu_send_command(scu *u, uint8_t pc_id, dimse_command *cmd, cp_error *err);
cp_status scu_send_data(scu *u, uint8_t pc_id, const void *data, size_t len, bool last,
                        cp_error *err);

/* Waits for the next response command (data sets of responses are skipped). */
cp_status scu_wait_response(scu *u, dimse_command *rsp, cp_error *err);

/*
 * Added for C-FIND: waits for the next response command and, when it
 * announces one, gathers its data set into data (reset first; at most
 * QR_IDENTIFIER_MAX bytes, CP_ERR_LIMIT beyond).
 */
cp_status scu_wait_response_data(scu *u, dimse_command *rsp, cp_buf *data, cp_error *err);

/* Added for C-FIND: a C-CANCEL-RQ for the request message_id (PS3.7 9.3.2.3). */
cp_status scu_cancel(scu *u, uint8_t pc_id, uint16_t message_id, cp_error *err);

/* Releases the association (A-RELEASE); the scu stays to be destroyed. */
cp_status scu_release(scu *u, cp_error *err);

/* Aborts the association if it is still open and frees everything. NULL is fine. */
void scu_destroy(scu *u);

#endif
