/*
 * dimse.h - DIMSE messages (PS3.7 section 9 and Annex E): command sets
 * encoded and decoded, and messages gathered from the PDVs of P-DATA-TF
 * PDUs (PS3.8 Annex E).
 *
 * A command set is group 0000 in Implicit VR Little Endian, whatever the
 * transfer syntax of the presentation context, led by CommandGroupLength.
 * It is small, so its PDV fragments are gathered (up to DIMSE_COMMAND_MAX)
 * and decoded with the DICOM core's parser. A data set is never gathered:
 * each PDV fragment is handed to the consumer as it arrives, so that a
 * C-STORE of any size costs one PDU of memory.
 */
#ifndef CP_NET_DIMSE_H
#define CP_NET_DIMSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/status.h"
#include "net/pdu.h"

/* Command Field values (PS3.7 E.1). */
enum {
    DIMSE_C_STORE_RQ = 0x0001,
    DIMSE_C_STORE_RSP = 0x8001,
    DIMSE_C_GET_RQ = 0x0010,
    DIMSE_C_GET_RSP = 0x8010,
    DIMSE_C_FIND_RQ = 0x0020,
    DIMSE_C_FIND_RSP = 0x8020,
    DIMSE_C_MOVE_RQ = 0x0021,
    DIMSE_C_MOVE_RSP = 0x8021,
    DIMSE_C_ECHO_RQ = 0x0030,
    DIMSE_C_ECHO_RSP = 0x8030,
    DIMSE_C_CANCEL_RQ = 0x0FFF,
};

/* Whether a Command Field is a response (bit 15 set). */
#define DIMSE_IS_RESPONSE(field) (((field) & 0x8000u) != 0)

/* CommandDataSetType (0000,0800): this value means no data set; any other one, a data set. */
#define DIMSE_NO_DATA_SET 0x0101

/* Priority (0000,0700). */
enum {
    DIMSE_PRIORITY_MEDIUM = 0x0000,
    DIMSE_PRIORITY_HIGH = 0x0001,
    DIMSE_PRIORITY_LOW = 0x0002,
};

/* Statuses (PS3.7 Annex C, PS3.4 B.2.3 for storage). */
enum {
    DIMSE_SUCCESS = 0x0000,
    DIMSE_PENDING = 0xFF00,
    DIMSE_CANCEL = 0xFE00,
    DIMSE_SOP_CLASS_NOT_SUPPORTED = 0x0122,
    DIMSE_NOT_AUTHORIZED = 0x0124,
    DIMSE_DUPLICATE_INVOCATION = 0x0210,
    DIMSE_UNRECOGNIZED_OPERATION = 0x0211,
    DIMSE_MISTYPED_ARGUMENT = 0x0212,
    DIMSE_OUT_OF_RESOURCES = 0xA700,
    DIMSE_DATA_SET_MISMATCH = 0xA900,
    DIMSE_CANNOT_UNDERSTAND = 0xC000,
    DIMSE_COERCION = 0xB000,
    DIMSE_ELEMENTS_DISCARDED = 0xB006,
    DIMSE_DATA_SET_NOT_MATCHING_SOP_CLASS = 0xB007,
};

/* Bits of dimse_command.fields: which optional elements are present. */
enum {
    DIMSE_F_AFFECTED_SOP_CLASS = 1u << 0,
    DIMSE_F_MESSAGE_ID = 1u << 1,
    DIMSE_F_RESPONDED_TO = 1u << 2,
    DIMSE_F_PRIORITY = 1u << 3,
    DIMSE_F_STATUS = 1u << 4,
    DIMSE_F_AFFECTED_SOP_INSTANCE = 1u << 5,
    DIMSE_F_MOVE_DESTINATION = 1u << 6,
    DIMSE_F_MOVE_ORIGINATOR_AE = 1u << 7,
    DIMSE_F_MOVE_ORIGINATOR_ID = 1u << 8,
    DIMSE_F_ERROR_COMMENT = 1u << 9,
    DIMSE_F_REMAINING = 1u << 10,
    DIMSE_F_COMPLETED = 1u << 11,
    DIMSE_F_FAILED = 1u << 12,
    DIMSE_F_WARNING = 1u << 13,
    DIMSE_F_OFFENDING_ELEMENT = 1u << 14,
};

/* The longest Error Comment (0000,0902), an LO: 64 characters. */
#define DIMSE_COMMENT_SIZE 65

/* A command set. Strings are NUL-terminated, padding removed. */
typedef struct dimse_command {
    uint16_t command_field;
    uint16_t data_set_type;             /* DIMSE_NO_DATA_SET or another value */
    unsigned fields;                    /* DIMSE_F_* */
    char affected_sop_class[PDU_UID_SIZE];
    char affected_sop_instance[PDU_UID_SIZE];
    uint16_t message_id;
    uint16_t responded_to;
    uint16_t priority;
    uint16_t status;
    char move_destination[PDU_AE_SIZE];
    char move_originator_ae[PDU_AE_SIZE];
    uint16_t move_originator_id;
    char error_comment[DIMSE_COMMENT_SIZE];
    uint16_t remaining;
    uint16_t completed;
    uint16_t failed;
    uint16_t warning;
    uint32_t offending_element;         /* first tag only */
} dimse_command;

/* Whether the command announces a data set. */
static inline bool dimse_has_data_set(const dimse_command *cmd)
{
    return cmd->data_set_type != DIMSE_NO_DATA_SET;
}

/*
 * Appends the command set to out: group 0000, Implicit VR Little Endian,
 * elements in ascending order, CommandGroupLength first. CP_ERR_INVALID
 * when a string is too long for its VR.
 */
cp_status dimse_encode_command(const dimse_command *cmd, cp_buf *out, cp_error *err);

/*
 * Decodes a command set of len bytes. Elements outside group 0000 or not
 * listed above are skipped. CP_ERR_MALFORMED (with err's detail) when the
 * bytes do not parse or CommandField is missing.
 */
cp_status dimse_decode_command(const uint8_t *data, size_t len, dimse_command *cmd,
                               cp_error *err);

/* A short name for a Command Field ("C-STORE-RQ"), for logs. */
const char *dimse_command_name(uint16_t command_field);

/*
 * What a dimse_receiver calls. command: a whole command set arrived on
 * pc_id. data: a fragment of the data set that the command announced, in
 * order; `last` on the final one (len may be 0 then). A failure stops the
 * receiver, which returns it.
 */
typedef struct dimse_handler {
    cp_status (*command)(void *ctx, uint8_t pc_id, const dimse_command *cmd);
    cp_status (*data)(void *ctx, uint8_t pc_id, const uint8_t *data, size_t len, bool last);
    void *ctx;
} dimse_handler;

/*
 * Puts messages together from PDVs (PS3.8 E.2): command fragments until the
 * last bit, then, when the command announces one, data set fragments
 * streamed to the handler. Protocol faults (a data set fragment nobody
 * announced, a command fragment in the middle of a data set, another
 * presentation context in one message, a command set over
 * DIMSE_COMMAND_MAX) fail with CP_ERR_MALFORMED or CP_ERR_LIMIT: the
 * caller aborts the association.
 */
typedef struct dimse_receiver {
    cp_buf command;                     /* fragments of the current command set */
    uint8_t pc_id;                      /* context of the message in progress */
    bool in_command;
    bool in_data;
    bool data_expected;                 /* the command announced a data set */
    uint64_t data_bytes;                /* bytes of the current data set so far */
} dimse_receiver;

void dimse_receiver_init(dimse_receiver *r);
void dimse_receiver_free(dimse_receiver *r);

/* Whether no message is in progress (between messages). */
bool dimse_receiver_idle(const dimse_receiver *r);

/* Feeds one PDV. */
cp_status dimse_receiver_feed(dimse_receiver *r, const pdu_pdv *pdv, const dimse_handler *h,
                              cp_error *err);

#endif
