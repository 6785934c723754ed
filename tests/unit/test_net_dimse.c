/*
 * test_net_dimse.c - DIMSE command sets (PS3.7 9.3, Annex E) and the
 * gathering of messages from PDVs (PS3.8 Annex E): round trips, the real
 * C-ECHO-RQ of DCMTK's echoscu byte for byte, fragments of one byte, and
 * every protocol fault the receiver refuses.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/buf.h"
#include "core/limits.h"
#include "net/dimse.h"

/* The command set of echoscu's C-ECHO-RQ (DCMTK 3.6), from its P-DATA-TF. */
static const uint8_t echoscu_command[] = {
    0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x38, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x02, 0x00, 0x12, 0x00, 0x00, 0x00, 0x31, 0x2e, 0x32, 0x2e,
    0x38, 0x34, 0x30, 0x2e, 0x31, 0x30, 0x30, 0x30, 0x38, 0x2e, 0x31, 0x2e,
    0x31, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x30, 0x00,
    0x00, 0x00, 0x10, 0x01, 0x02, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00,
    0x00, 0x08, 0x02, 0x00, 0x00, 0x00, 0x01, 0x01,
};

static void test_echoscu_decode(void **state)
{
    dimse_command c;
    cp_error err;

    (void)state;
    cp_error_clear(&err);
    assert_int_equal(dimse_decode_command(echoscu_command, sizeof echoscu_command, &c, &err),
                     CP_OK);
    assert_int_equal(c.command_field, DIMSE_C_ECHO_RQ);
    assert_int_equal(c.message_id, 1);
    assert_int_equal(c.data_set_type, DIMSE_NO_DATA_SET);
    assert_false(dimse_has_data_set(&c));
    assert_string_equal(c.affected_sop_class, "1.2.840.10008.1.1");
    assert_true(c.fields & DIMSE_F_AFFECTED_SOP_CLASS);
    assert_true(c.fields & DIMSE_F_MESSAGE_ID);
    assert_false(c.fields & DIMSE_F_STATUS);
}

/* What we encode for the same request is what DCMTK sent, byte for byte. */
static void test_echo_encode_matches_dcmtk(void **state)
{
    dimse_command c;
    cp_buf out = CP_BUF_INIT;

    (void)state;
    memset(&c, 0, sizeof c);
    c.command_field = DIMSE_C_ECHO_RQ;
    c.data_set_type = DIMSE_NO_DATA_SET;
    c.fields = DIMSE_F_AFFECTED_SOP_CLASS | DIMSE_F_MESSAGE_ID;
    c.message_id = 1;
    strcpy(c.affected_sop_class, "1.2.840.10008.1.1");
    assert_int_equal(dimse_encode_command(&c, &out, NULL), CP_OK);
    assert_int_equal(out.len, sizeof echoscu_command);
    assert_memory_equal(out.data, echoscu_command, out.len);
    cp_buf_free(&out);
}

static void round_trip(const dimse_command *in)
{
    dimse_command back;
    cp_buf out = CP_BUF_INIT;
    cp_error err;

    cp_error_clear(&err);
    assert_int_equal(dimse_encode_command(in, &out, NULL), CP_OK);
    /* Group length counts the bytes after its own element. */
    assert_int_equal(out.data[8] | out.data[9] << 8 | out.data[10] << 16, out.len - 12);
    assert_int_equal(out.len % 2, 0);
    assert_int_equal(dimse_decode_command(out.data, out.len, &back, &err), CP_OK);
    assert_memory_equal(&back, in, sizeof back);
    cp_buf_free(&out);
}

static void test_round_trips(void **state)
{
    dimse_command c;

    (void)state;
    memset(&c, 0, sizeof c);
    c.command_field = DIMSE_C_STORE_RQ;
    c.data_set_type = 0x0000;
    c.fields = DIMSE_F_AFFECTED_SOP_CLASS | DIMSE_F_MESSAGE_ID | DIMSE_F_PRIORITY |
               DIMSE_F_AFFECTED_SOP_INSTANCE | DIMSE_F_MOVE_ORIGINATOR_AE |
               DIMSE_F_MOVE_ORIGINATOR_ID;
    strcpy(c.affected_sop_class, "1.2.840.10008.5.1.4.1.1.2");
    strcpy(c.affected_sop_instance, "1.2.3.4.5.6.7");
    c.message_id = 7;
    c.priority = DIMSE_PRIORITY_HIGH;
    strcpy(c.move_originator_ae, "MOVER");
    c.move_originator_id = 99;
    round_trip(&c);

    memset(&c, 0, sizeof c);
    c.command_field = DIMSE_C_STORE_RSP;
    c.data_set_type = DIMSE_NO_DATA_SET;
    c.fields = DIMSE_F_AFFECTED_SOP_CLASS | DIMSE_F_RESPONDED_TO | DIMSE_F_STATUS |
               DIMSE_F_AFFECTED_SOP_INSTANCE | DIMSE_F_ERROR_COMMENT |
               DIMSE_F_OFFENDING_ELEMENT;
    strcpy(c.affected_sop_class, "1.2.840.10008.5.1.4.1.1.4");
    strcpy(c.affected_sop_instance, "1.2.3");
    c.responded_to = 7;
    c.status = DIMSE_DATA_SET_MISMATCH;
    strcpy(c.error_comment, "odd comment");
    c.offending_element = 0x00080018;
    round_trip(&c);

    memset(&c, 0, sizeof c);
    c.command_field = DIMSE_C_MOVE_RSP;
    c.data_set_type = DIMSE_NO_DATA_SET;
    c.fields = DIMSE_F_RESPONDED_TO | DIMSE_F_STATUS | DIMSE_F_REMAINING |
               DIMSE_F_COMPLETED | DIMSE_F_FAILED | DIMSE_F_WARNING;
    c.status = DIMSE_PENDING;
    c.remaining = 10;
    c.completed = 2;
    c.failed = 1;
    c.warning = 3;
    round_trip(&c);

    memset(&c, 0, sizeof c);
    c.command_field = DIMSE_C_MOVE_RQ;
    c.data_set_type = 0x0001;
    c.fields = DIMSE_F_AFFECTED_SOP_CLASS | DIMSE_F_MESSAGE_ID | DIMSE_F_PRIORITY |
               DIMSE_F_MOVE_DESTINATION;
    strcpy(c.affected_sop_class, "1.2.840.10008.5.1.4.1.2.2.2");
    strcpy(c.move_destination, "DEST");
    round_trip(&c);
}

static void test_decode_faults(void **state)
{
    dimse_command c;
    uint8_t bad[sizeof echoscu_command];
    cp_error err;

    (void)state;
    /* Truncated in the middle of an element. */
    cp_error_clear(&err);
    assert_int_not_equal(dimse_decode_command(echoscu_command, 30, &c, &err), CP_OK);

    /* Without CommandField (its tag renamed to an unknown element). */
    memcpy(bad, echoscu_command, sizeof bad);
    bad[40] = 0x99;
    cp_error_clear(&err);
    assert_int_equal(dimse_decode_command(bad, sizeof bad, &c, &err), CP_ERR_MALFORMED);

    /* A US element of the wrong length. */
    memcpy(bad, echoscu_command, sizeof bad);
    bad[52] = 0x04;
    cp_error_clear(&err);
    assert_int_not_equal(dimse_decode_command(bad, sizeof bad, &c, &err), CP_OK);

    /* Not group 0000. */
    memcpy(bad, echoscu_command, sizeof bad);
    bad[12] = 0x08;
    cp_error_clear(&err);
    assert_int_equal(dimse_decode_command(bad, sizeof bad, &c, &err), CP_ERR_MALFORMED);
}

/* --- the receiver ------------------------------------------------------- */

typedef struct seen {
    int commands;
    dimse_command last;
    uint8_t pc_id;
    cp_buf data;
    int data_calls;
    bool data_done;
} seen;

static cp_status on_command(void *ctx, uint8_t pc_id, const dimse_command *cmd)
{
    seen *s = ctx;

    s->commands++;
    s->last = *cmd;
    s->pc_id = pc_id;
    return CP_OK;
}

static cp_status on_data(void *ctx, uint8_t pc_id, const uint8_t *data, size_t len, bool last)
{
    seen *s = ctx;

    assert_int_equal(pc_id, s->pc_id);
    s->data_calls++;
    s->data_done = last;
    return cp_buf_append(&s->data, data, len);
}

static cp_status feed(dimse_receiver *r, seen *s, uint8_t pc, bool command, const uint8_t *d,
                      size_t len, bool last)
{
    dimse_handler h = { on_command, on_data, s };
    pdu_pdv v = { pc, command, last, d, len };

    return dimse_receiver_feed(r, &v, &h, NULL);
}

static void test_receiver_fragments(void **state)
{
    dimse_command c;
    cp_buf cmd = CP_BUF_INIT;
    uint8_t payload[1000];
    dimse_receiver r;
    seen s;

    (void)state;
    memset(&s, 0, sizeof s);
    memset(&c, 0, sizeof c);
    c.command_field = DIMSE_C_STORE_RQ;
    c.data_set_type = 0;
    c.fields = DIMSE_F_AFFECTED_SOP_CLASS | DIMSE_F_AFFECTED_SOP_INSTANCE | DIMSE_F_MESSAGE_ID;
    strcpy(c.affected_sop_class, "1.2.840.10008.5.1.4.1.1.7");
    strcpy(c.affected_sop_instance, "1.2.3.4");
    assert_int_equal(dimse_encode_command(&c, &cmd, NULL), CP_OK);
    for (size_t i = 0; i < sizeof payload; i++)
        payload[i] = (uint8_t)(i * 7);

    dimse_receiver_init(&r);
    assert_true(dimse_receiver_idle(&r));
    /* The command one byte per PDV. */
    for (size_t i = 0; i < cmd.len; i++)
        assert_int_equal(feed(&r, &s, 3, true, cmd.data + i, 1, i + 1 == cmd.len), CP_OK);
    assert_int_equal(s.commands, 1);
    assert_int_equal(s.pc_id, 3);
    assert_string_equal(s.last.affected_sop_instance, "1.2.3.4");
    assert_false(dimse_receiver_idle(&r));

    /* The data set in uneven pieces, then an empty last fragment. */
    for (size_t off = 0; off < sizeof payload; off += 333) {
        size_t n = sizeof payload - off < 333 ? sizeof payload - off : 333;

        assert_int_equal(feed(&r, &s, 3, false, payload + off, n, false), CP_OK);
    }
    assert_int_equal(feed(&r, &s, 3, false, NULL, 0, true), CP_OK);
    assert_true(s.data_done);
    assert_int_equal(s.data.len, sizeof payload);
    assert_memory_equal(s.data.data, payload, sizeof payload);
    assert_true(dimse_receiver_idle(&r));

    /* A second message without data set. */
    assert_int_equal(feed(&r, &s, 1, true, echoscu_command, sizeof echoscu_command, true),
                     CP_OK);
    assert_int_equal(s.commands, 2);
    assert_true(dimse_receiver_idle(&r));

    dimse_receiver_free(&r);
    cp_buf_free(&cmd);
    cp_buf_free(&s.data);
}

static void test_receiver_faults(void **state)
{
    static uint8_t big[1024];
    dimse_command c;
    cp_buf cmd = CP_BUF_INIT;
    dimse_receiver r;
    seen s;

    (void)state;
    memset(&s, 0, sizeof s);
    memset(&c, 0, sizeof c);
    c.command_field = DIMSE_C_STORE_RQ;
    c.data_set_type = 0;
    assert_int_equal(dimse_encode_command(&c, &cmd, NULL), CP_OK);

    /* Data that no command announced. */
    dimse_receiver_init(&r);
    assert_int_equal(feed(&r, &s, 1, false, big, 4, true), CP_ERR_MALFORMED);
    /* Data after a command without data set. */
    assert_int_equal(feed(&r, &s, 1, true, echoscu_command, sizeof echoscu_command, true),
                     CP_OK);
    assert_int_equal(feed(&r, &s, 1, false, big, 4, true), CP_ERR_MALFORMED);
    dimse_receiver_free(&r);

    /* A command fragment inside a data set; data on another context. */
    dimse_receiver_init(&r);
    assert_int_equal(feed(&r, &s, 1, true, cmd.data, cmd.len, true), CP_OK);
    assert_int_equal(feed(&r, &s, 3, false, big, 4, false), CP_ERR_MALFORMED);
    assert_int_equal(feed(&r, &s, 1, true, cmd.data, cmd.len, true), CP_ERR_MALFORMED);
    dimse_receiver_free(&r);

    /* Command fragments on two contexts. */
    dimse_receiver_init(&r);
    assert_int_equal(feed(&r, &s, 1, true, cmd.data, 4, false), CP_OK);
    assert_int_equal(feed(&r, &s, 3, true, cmd.data + 4, 4, false), CP_ERR_MALFORMED);
    dimse_receiver_free(&r);

    /* A command set that never ends stops at DIMSE_COMMAND_MAX. */
    dimse_receiver_init(&r);
    {
        cp_status st = CP_OK;
        size_t sent = 0;

        while (st == CP_OK && sent <= DIMSE_COMMAND_MAX) {
            st = feed(&r, &s, 1, true, big, sizeof big, false);
            sent += sizeof big;
        }
        assert_int_equal(st, CP_ERR_LIMIT);
        assert_true(sent <= DIMSE_COMMAND_MAX + sizeof big);
    }
    dimse_receiver_free(&r);
    cp_buf_free(&cmd);
}

/* Mutated command sets decode or fail cleanly (ASan watches the reads). */
static void test_mutated_commands(void **state)
{
    uint8_t buf[sizeof echoscu_command];
    uint32_t seed = 99;
    int ok = 0;

    (void)state;
    for (int iter = 0; iter < 20000; iter++) {
        dimse_command c;
        cp_error err;
        size_t len = sizeof buf;

        memcpy(buf, echoscu_command, sizeof buf);
        for (int m = 0; m < 1 + iter % 3; m++) {
            seed = seed * 1103515245u + 12345u;
            buf[(seed >> 8) % sizeof buf] = (uint8_t)(seed >> 20);
        }
        if (iter % 4 == 0)
            len = (seed >> 3) % sizeof buf;
        cp_error_clear(&err);
        ok += dimse_decode_command(buf, len, &c, &err) == CP_OK;
    }
    assert_true(ok > 0);
}

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(dimse_command_name(DIMSE_C_STORE_RSP), "C-STORE-RSP");
    assert_string_equal(dimse_command_name(0x1234), "other");
    assert_true(DIMSE_IS_RESPONSE(DIMSE_C_ECHO_RSP));
    assert_false(DIMSE_IS_RESPONSE(DIMSE_C_ECHO_RQ));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_echoscu_decode),
        cmocka_unit_test(test_echo_encode_matches_dcmtk),
        cmocka_unit_test(test_round_trips),
        cmocka_unit_test(test_decode_faults),
        cmocka_unit_test(test_receiver_fragments),
        cmocka_unit_test(test_receiver_faults),
        cmocka_unit_test(test_mutated_commands),
        cmocka_unit_test(test_names),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
