/*
 * pdu.h - the DICOM upper layer PDUs of PS3.8 section 9.3, decoded from and
 * encoded into byte buffers. No sockets here: the association state machine
 * (PS3.8 9.2) reads a PDU off the wire and hands its bytes to pdu_decode,
 * and sends what the pdu_encode_* functions build.
 *
 * Reading a PDU from a socket takes two steps: read the 6-byte header, pass
 * it to pdu_read_header with the largest length the service accepts in its
 * state, and only then allocate and read the body. pdu_decode takes the
 * whole PDU (header and body) so that every error offset is an offset in
 * the PDU.
 *
 * Decoding is strict about structure (every length is checked against its
 * parent before anything is read, items appear where PS3.8 puts them) and
 * lenient about content: reserved fields are not tested (PS3.8 9.3.1), user
 * information sub-items of unknown type are skipped, UIDs may carry
 * trailing NUL or space padding. Semantic checks (is this the DICOM
 * application context, is this protocol version supported, is this
 * presentation context ID one we accepted) belong to the association layer.
 *
 * Every decoding failure fills a cp_error (what was wrong, at which byte
 * offset of the PDU) and, through an optional out-parameter, the A-ABORT
 * reason the service should send (PS3.8 9.3.8).
 *
 * Memory: pdu_decode allocates a pdu (through cp_malloc) that owns its
 * arrays; pdu_destroy frees it. UIDs and AE titles are copied into
 * NUL-terminated fixed arrays. Opaque byte fields (extended negotiation
 * information, user identity fields, the identity server response) point
 * into a private copy of the association PDU that the pdu owns. PDVs of a
 * P-DATA-TF are NOT copied: their data points into the buffer handed to
 * pdu_decode, which must outlive the pdu.
 *
 * To encode, fill a pdu_assoc (or the other structs) yourself; arrays may
 * live anywhere (the stack, static tables). Encoders check what they are
 * given against the same rules the decoder applies, so that everything
 * encoded decodes, and append the PDU to a cp_buf.
 */
#ifndef CP_NET_PDU_H
#define CP_NET_PDU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/status.h"

/* PDU types (PS3.8 Table 9-10 and the sections after it). */
typedef enum pdu_type {
    PDU_ASSOCIATE_RQ = 0x01,
    PDU_ASSOCIATE_AC = 0x02,
    PDU_ASSOCIATE_RJ = 0x03,
    PDU_P_DATA_TF = 0x04,
    PDU_RELEASE_RQ = 0x05,
    PDU_RELEASE_RP = 0x06,
    PDU_ABORT = 0x07
} pdu_type;

/* Bytes of the PDU header: type, reserved, 4-byte big-endian length. */
#define PDU_HEADER_LEN 6

/* Bit 0 of the protocol version field: version 1 (PS3.8 9.3.2). */
#define PDU_PROTOCOL_VERSION 0x0001

/* UIDs: at most 64 characters (PS3.5 9.1), plus the NUL. */
#define PDU_UID_SIZE 65
/* AE titles: at most 16 characters (PS3.5 6.2 AE), plus the NUL. */
#define PDU_AE_SIZE 17
/* Implementation Version Name: 1-16 characters (PS3.7 D.3.3.2), plus the NUL. */
#define PDU_VERSION_NAME_SIZE 17

/* The DICOM Application Context Name (PS3.7 A.2.1). */
#define PDU_APPLICATION_CONTEXT "1.2.840.10008.3.1.1.1"

/* A-ABORT source (PS3.8 Table 9-26). */
typedef enum pdu_abort_source {
    PDU_ABORT_SOURCE_USER = 0,
    PDU_ABORT_SOURCE_RESERVED = 1,
    PDU_ABORT_SOURCE_PROVIDER = 2
} pdu_abort_source;

/*
 * A-ABORT reason when the source is the service provider (PS3.8 Table
 * 9-26); 3 is reserved. Decoding failures map onto 1, 4, 5 and 6; 2 is for
 * the state machine (a valid PDU in the wrong state).
 */
typedef enum pdu_abort_reason {
    PDU_ABORT_NOT_SPECIFIED = 0,
    PDU_ABORT_UNRECOGNIZED_PDU = 1,
    PDU_ABORT_UNEXPECTED_PDU = 2,
    PDU_ABORT_UNRECOGNIZED_PARAM = 4,
    PDU_ABORT_UNEXPECTED_PARAM = 5,
    PDU_ABORT_INVALID_PARAM = 6
} pdu_abort_reason;

/* A-ASSOCIATE-RJ result, source and reason/diagnostic (PS3.8 Table 9-21). */
typedef enum pdu_reject_result {
    PDU_REJECT_PERMANENT = 1,
    PDU_REJECT_TRANSIENT = 2
} pdu_reject_result;

typedef enum pdu_reject_source {
    PDU_REJECT_SOURCE_USER = 1,         /* DICOM UL service-user */
    PDU_REJECT_SOURCE_ACSE = 2,         /* service-provider, ACSE related */
    PDU_REJECT_SOURCE_PRESENTATION = 3  /* service-provider, presentation related */
} pdu_reject_source;

/*
 * Reasons by source. Values between them are reserved: the decoder accepts
 * them (a later edition may define them), within 1-10, 1-2 and 0-7.
 */
typedef enum pdu_reject_reason {
    PDU_REJECT_USER_NO_REASON = 1,
    PDU_REJECT_USER_CONTEXT_NAME = 2,       /* application context name not supported */
    PDU_REJECT_USER_CALLING_AE = 3,         /* calling AE title not recognized */
    PDU_REJECT_USER_CALLED_AE = 7,          /* called AE title not recognized */
    PDU_REJECT_ACSE_NO_REASON = 1,
    PDU_REJECT_ACSE_PROTOCOL_VERSION = 2,   /* protocol version not supported */
    PDU_REJECT_PRESENTATION_CONGESTION = 1, /* temporary congestion */
    PDU_REJECT_PRESENTATION_LIMIT = 2       /* local limit exceeded */
} pdu_reject_reason;

/* Presentation context result/reason in an A-ASSOCIATE-AC (PS3.8 Table 9-18). */
typedef enum pdu_pc_result {
    PDU_PC_ACCEPTANCE = 0,
    PDU_PC_USER_REJECTION = 1,
    PDU_PC_NO_REASON = 2,
    PDU_PC_ABSTRACT_SYNTAX_NOT_SUPPORTED = 3,
    PDU_PC_TRANSFER_SYNTAXES_NOT_SUPPORTED = 4
} pdu_pc_result;

/* User Identity Type (PS3.7 Table D.3-14). Other values are passed up as they are. */
typedef enum pdu_identity_type {
    PDU_IDENTITY_USERNAME = 1,
    PDU_IDENTITY_USERNAME_PASSCODE = 2,
    PDU_IDENTITY_KERBEROS = 3,
    PDU_IDENTITY_SAML = 4,
    PDU_IDENTITY_JWT = 5
} pdu_identity_type;

/* A UID as a NUL-terminated string of digits and dots, padding removed. */
typedef struct pdu_uid {
    char value[PDU_UID_SIZE];
} pdu_uid;

/*
 * A presentation context item. In an A-ASSOCIATE-RQ (item 20H): the
 * abstract syntax and 1 to PDU_TS_PER_CONTEXT_MAX proposed transfer
 * syntaxes; result is 0. In an A-ASSOCIATE-AC (item 21H): result, and one
 * transfer syntax when accepted; for other results the transfer syntax is
 * not significant (PS3.8 Table 9-18): ts_count is 0 or 1, and 0 encodes an
 * empty transfer syntax sub-item. abstract_syntax is empty in an -AC.
 */
typedef struct pdu_pres_ctx {
    uint8_t id;                         /* odd, 1-255 */
    uint8_t result;                     /* pdu_pc_result, -AC only */
    pdu_uid abstract_syntax;
    size_t ts_count;
    pdu_uid *ts;
} pdu_pres_ctx;

/* SCP/SCU Role Selection sub-item (54H, PS3.7 D.3.3.4); roles are 0 or 1. */
typedef struct pdu_role {
    pdu_uid sop_class;
    uint8_t scu_role;
    uint8_t scp_role;
} pdu_role;

/* SOP Class Extended Negotiation sub-item (56H, PS3.7 D.3.3.5). */
typedef struct pdu_ext_neg {
    pdu_uid sop_class;
    const uint8_t *info;                /* service-class application information */
    size_t info_len;
} pdu_ext_neg;

/* SOP Class Common Extended Negotiation sub-item (57H, PS3.7 D.3.3.6). */
typedef struct pdu_common_ext_neg {
    uint8_t version;                    /* the sub-item version byte, 0 today */
    pdu_uid sop_class;
    pdu_uid service_class;
    size_t related_count;               /* at most PDU_RELATED_CLASSES_MAX */
    pdu_uid *related;                   /* related general SOP class UIDs */
} pdu_common_ext_neg;

/* User Identity Negotiation, request (58H, PS3.7 D.3.3.7.1). */
typedef struct pdu_identity_rq {
    uint8_t type;                       /* pdu_identity_type */
    bool response_requested;            /* positive response requested */
    const uint8_t *primary;             /* user name, Kerberos ticket, SAML or JWT */
    size_t primary_len;
    const uint8_t *secondary;           /* passcode, type 2 only */
    size_t secondary_len;
} pdu_identity_rq;

/*
 * The User Information item (50H) and its sub-items (PS3.8 D.1, PS3.7
 * D.3.3). Absent single sub-items have their has_ flag false or an empty
 * string; the association layer decides which are required.
 */
typedef struct pdu_user_info {
    bool has_max_length;
    uint32_t max_length;                /* 51H; 0 means no limit */
    pdu_uid impl_class_uid;             /* 52H */
    char impl_version[PDU_VERSION_NAME_SIZE];   /* 55H */
    bool has_async_window;              /* 53H */
    uint16_t max_ops_invoked;
    uint16_t max_ops_performed;
    size_t role_count;                  /* 54H */
    pdu_role *roles;
    size_t ext_neg_count;               /* 56H */
    pdu_ext_neg *ext_neg;
    size_t common_ext_neg_count;        /* 57H */
    pdu_common_ext_neg *common_ext_neg;
    bool has_identity_rq;               /* 58H */
    pdu_identity_rq identity_rq;
    bool has_identity_ac;               /* 59H */
    const uint8_t *identity_response;   /* server response */
    size_t identity_response_len;
} pdu_user_info;

/*
 * A-ASSOCIATE-RQ and -AC (PS3.8 9.3.2, 9.3.3). The AE titles are the
 * significant part (leading and trailing spaces removed), 1-16 characters of
 * the default repertoire without backslash or control characters. In an
 * -AC they are reserved fields that PS3.8 forbids testing: the decoder
 * leaves them empty, the encoder writes them when given (an empty one is
 * written as spaces).
 */
typedef struct pdu_assoc {
    uint16_t protocol_version;          /* PDU_PROTOCOL_VERSION */
    char called_ae[PDU_AE_SIZE];
    char calling_ae[PDU_AE_SIZE];
    pdu_uid app_context;                /* PDU_APPLICATION_CONTEXT */
    size_t pc_count;                    /* 1 to PDU_CONTEXTS_MAX */
    pdu_pres_ctx *pcs;
    bool has_user_info;
    pdu_user_info user;
} pdu_assoc;

/* A-ASSOCIATE-RJ (PS3.8 9.3.4). */
typedef struct pdu_reject {
    uint8_t result;                     /* pdu_reject_result */
    uint8_t source;                     /* pdu_reject_source */
    uint8_t reason;                     /* pdu_reject_reason, by source */
} pdu_reject;

/* A-ABORT (PS3.8 9.3.8). reason is significant only when source is 2. */
typedef struct pdu_abort {
    uint8_t source;                     /* pdu_abort_source */
    uint8_t reason;                     /* pdu_abort_reason */
} pdu_abort;

/* Bits of the message control header of a PDV (PS3.8 E.2). */
#define PDU_PDV_COMMAND 0x01            /* command set, else data set */
#define PDU_PDV_LAST    0x02            /* last fragment of the message */

/*
 * One presentation data value: a fragment of a command or data set for
 * one presentation context. Decoded PDVs point into the decoded buffer.
 */
typedef struct pdu_pdv {
    uint8_t pc_id;                      /* odd, 1-255 */
    bool command;
    bool last;
    const uint8_t *data;
    size_t len;
} pdu_pdv;

/* P-DATA-TF (PS3.8 9.3.5): one or more PDVs. */
typedef struct pdu_pdata {
    size_t count;                       /* 1 to PDU_PDVS_MAX */
    pdu_pdv *pdvs;
} pdu_pdata;

/*
 * A decoded PDU. `type` says which member is meaningful: assoc for
 * ASSOCIATE_RQ and _AC, reject, pdata, abort; release PDUs carry nothing.
 */
typedef struct pdu {
    pdu_type type;
    pdu_assoc assoc;
    pdu_reject reject;
    pdu_pdata pdata;
    pdu_abort abort;
    uint8_t *owned;                     /* private copy behind byte fields */
} pdu;

/*
 * Reads a PDU header: `hdr` holds at least `len` bytes, of which the first
 * PDU_HEADER_LEN are used. Fails when fewer than PDU_HEADER_LEN are given,
 * when the type is unknown (abort reason 1), when the length exceeds
 * max_length (and, for association PDUs, PDU_ASSOCIATE_MAX), or when it
 * cannot hold the fixed fields of its type (reason 6). max_length is the
 * largest PDU length field, the 6-byte header excluded, that the caller
 * will read now; it should not exceed PDU_LENGTH_MAX. reason may be NULL.
 */
cp_status pdu_read_header(const uint8_t *hdr, size_t len, uint32_t max_length,
                          pdu_type *type, uint32_t *length,
                          pdu_abort_reason *reason, cp_error *err);

/*
 * Decodes one whole PDU of exactly `len` bytes (header included, so `len`
 * is 6 plus the length field). On success *out is a new pdu to free with
 * pdu_destroy; PDVs point into `data`. On failure *out is NULL, err says
 * what and where, and *reason (when not NULL) holds the A-ABORT reason.
 */
cp_status pdu_decode(const uint8_t *data, size_t len, uint32_t max_length, pdu **out,
                     pdu_abort_reason *reason, cp_error *err);

/* Frees a decoded pdu; NULL is fine. */
void pdu_destroy(pdu *p);

/*
 * The abort reason for a status returned by a function of this module that
 * did not give one: CP_ERR_UNSUPPORTED means an unrecognized PDU, every
 * other failure an invalid parameter value. Decoders give the finer reason
 * through their out-parameter; this is for the rest.
 */
pdu_abort_reason pdu_abort_reason_for(cp_status status);

/*
 * Whether an AE title, as `len` bytes, is valid (PS3.5 6.2, AE): at most
 * 16 bytes, of the default repertoire without backslash or control
 * characters, not empty or all spaces once leading and trailing spaces
 * are removed.
 */
bool pdu_ae_is_valid(const char *ae, size_t len);

/*
 * Encoders. Each appends one PDU to `out`; on failure `out` is left as it
 * was, err says which field was wrong (CP_ERR_INVALID) and CP_ERR_NOMEM is
 * possible.
 */
cp_status pdu_encode_associate_rq(cp_buf *out, const pdu_assoc *rq, cp_error *err);
cp_status pdu_encode_associate_ac(cp_buf *out, const pdu_assoc *ac, cp_error *err);
cp_status pdu_encode_associate_rj(cp_buf *out, const pdu_reject *rj, cp_error *err);
cp_status pdu_encode_release_rq(cp_buf *out);
cp_status pdu_encode_release_rp(cp_buf *out);
cp_status pdu_encode_abort(cp_buf *out, const pdu_abort *ab, cp_error *err);

/* One P-DATA-TF holding `count` PDVs (1 to PDU_PDVS_MAX), in order. */
cp_status pdu_encode_pdata(cp_buf *out, const pdu_pdv *pdvs, size_t count, cp_error *err);

/* Encodes any decoded (or filled in) pdu by its type. */
cp_status pdu_encode(cp_buf *out, const pdu *p, cp_error *err);

/*
 * The largest PDV payload of a P-DATA-TF carrying one PDV, given the
 * Maximum Length the peer advertised (0: no limit). The PDU is also kept
 * within PDU_SEND_MAX, and the payload is even so that fragments of an
 * even-length message stay even. 0 when peer_max_length leaves no room
 * (less than 8).
 */
size_t pdu_pdv_payload_max(uint32_t peer_max_length);

/*
 * Appends a message (or a piece of a streamed one) as P-DATA-TF PDUs of one
 * PDV each, cut to fit peer_max_length. `last` sets the last-fragment bit on
 * the final PDV; when len is 0 and last is set, one empty last PDV is sent.
 */
cp_status pdu_encode_pdata_fragments(cp_buf *out, uint8_t pc_id, bool command,
                                     const uint8_t *data, size_t len,
                                     uint32_t peer_max_length, bool last,
                                     cp_error *err);

/*
 * Whether two pdus carry the same values (byte fields compared by content).
 * For tests and the fuzz target's round trip.
 */
bool pdu_equal(const pdu *a, const pdu *b);

#endif
