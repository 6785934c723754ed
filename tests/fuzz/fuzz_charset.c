/*
 * fuzz_charset.c - libFuzzer target for the Specific Character Set decoder
 * (src/dicom/charset.c: PS3.5 section 6.1 and the person names of 6.2.1).
 *
 * Input: byte 0 picks the character set, one of the terms below, or, when
 * its high bit is set, a raw 0008,0005 value whose length is byte 2 and
 * whose bytes follow it; byte 1 picks the VR and the policy; the rest is the
 * value. The decoded text must be well-formed UTF-8 within the growth cap;
 * it is then split into values and person-name groups and encoded back,
 * and text decoded without guessing must survive the round trip.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "core/limits.h"
#include "dicom/charset.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const fuzz_terms[] = {
    "", "ISO_IR 6", "ISO_IR 100", "ISO_IR 101", "ISO_IR 109", "ISO_IR 110",
    "ISO_IR 144", "ISO_IR 127", "ISO_IR 126", "ISO_IR 138", "ISO_IR 148",
    "ISO_IR 203", "ISO_IR 13", "ISO_IR 166", "ISO_IR 192", "GB18030", "GBK",
    "ISO 2022 IR 6", "ISO 2022 IR 100", "ISO 2022 IR 13", "ISO 2022 IR 166",
    "\\ISO 2022 IR 87", "ISO 2022 IR 13\\ISO 2022 IR 87",
    "\\ISO 2022 IR 87\\ISO 2022 IR 159", "\\ISO 2022 IR 149",
    "ISO 2022 IR 6\\ISO 2022 IR 58", "ISO 2022 IR 100\\ISO 2022 IR 126",
    "ISO 2022 IR 6\\ISO 2022 IR 149\\ISO 2022 IR 58", "ISO_IR 999",
    "ISO 2022 IR 87", "ISO 2022 IR 149", "GB18030\\ISO_IR 100",
};

#define FUZZ_TERM_COUNT (sizeof fuzz_terms / sizeof fuzz_terms[0])
#define FUZZ_RAW_TERM_MAX 64

static const dcm_vr fuzz_vrs[8] = {
    DCM_VR_PN, DCM_VR_LO, DCM_VR_SH, DCM_VR_LT, DCM_VR_ST, DCM_VR_UT, DCM_VR_UC, DCM_VR_CS,
};

static const char *const fuzz_overrides[4] = { NULL, "GB18030", "ISO_IR 100", "ISO_IR 192" };

static size_t fuzz_utf8_length(const uint8_t *p, size_t n)
{
    uint8_t b = p[0], lo = 0x80, hi = 0xBF;
    size_t need;

    if (b < 0x80)
        return 1;
    if (b >= 0xC2 && b <= 0xDF)
        need = 2;
    else if (b >= 0xE0 && b <= 0xEF)
        need = 3;
    else if (b >= 0xF0 && b <= 0xF4)
        need = 4;
    else
        return 0;
    if (need > n)
        return 0;
    if (b == 0xE0)
        lo = 0xA0;
    else if (b == 0xED)
        hi = 0x9F;
    else if (b == 0xF0)
        lo = 0x90;
    else if (b == 0xF4)
        hi = 0x8F;
    for (size_t i = 1; i < need; i++) {
        if (p[i] < lo || p[i] > hi)
            return 0;
        lo = 0x80;
        hi = 0xBF;
    }
    return need;
}

static void fuzz_check_utf8(const uint8_t *p, size_t n)
{
    for (size_t i = 0, k; i < n; i += k) {
        k = fuzz_utf8_length(p + i, n - i);
        if (k == 0)
            abort();
    }
}

/* Splits the decoded text into values and each value into its groups. */
static void fuzz_split(const char *text, size_t len)
{
    size_t start = 0;

    for (size_t i = 0; i <= len; i++) {
        dcm_person_name pn;

        if (i < len && text[i] != '\\')
            continue;
        dcm_person_name_split(text + start, i - start, &pn);
        if (pn.alphabetic_len + pn.ideographic_len + pn.phonetic_len > i - start)
            abort();
        start = i + 1;
    }
}

/*
 * Text that decoded cleanly, without guessing, and that encodes back into
 * the same set must decode to itself.
 */
static void fuzz_round_trip(dcm_charset *cs, dcm_vr vr, const cp_buf *encoded,
                            const cp_buf *text)
{
    cp_buf again = CP_BUF_INIT;
    unsigned flags = 0;

    if (dcm_charset_decode(cs, vr, encoded->data, encoded->len, &again, &flags) == CP_OK
        && (again.len != text->len || memcmp(again.data, text->data, text->len) != 0))
        abort();
    cp_buf_free(&again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char term[FUZZ_RAW_TERM_MAX + 1];
    dcm_charset_policy policy;
    dcm_charset *cs = NULL;
    cp_buf out = CP_BUF_INIT, back = CP_BUF_INIT;
    const uint8_t *value;
    size_t vlen, tlen;
    unsigned flags = 0;
    dcm_vr vr;
    cp_status st;

    if (size < 2)
        return 0;
    vr = fuzz_vrs[data[1] & 7];
    policy.detect = (data[1] & 8) == 0;
    policy.override_charset = fuzz_overrides[(data[1] >> 4) & 3];
    policy.default_charset = (data[1] & 0x40) != 0 ? "GB18030" : NULL;

    if (data[0] & 0x80) {
        if (size < 3)
            return 0;
        tlen = data[2] % (FUZZ_RAW_TERM_MAX + 1);
        if (tlen > size - 3)
            tlen = size - 3;
        memcpy(term, data + 3, tlen);
        value = data + 3 + tlen;
        vlen = size - 3 - tlen;
    } else {
        const char *t = fuzz_terms[data[0] % FUZZ_TERM_COUNT];

        tlen = strlen(t);
        memcpy(term, t, tlen);
        value = data + 2;
        vlen = size - 2;
    }
    term[tlen] = '\0';

    if (dcm_charset_create((const uint8_t *)term, tlen, &policy, &cs, NULL) != CP_OK)
        return 0;
    st = dcm_charset_decode(cs, vr, value, vlen, &out, &flags);
    if (st != CP_OK && st != CP_ERR_NOMEM)
        abort();
    if (st == CP_OK) {
        if (out.len > vlen * DCM_CHARSET_GROWTH_MAX + DCM_CHARSET_GROWTH_SLACK)
            abort();
        fuzz_check_utf8(out.data, out.len);
        fuzz_split((const char *)out.data, out.len);

        st = dcm_charset_encode(term, (const char *)out.data, out.len, &back);
        if (st != CP_OK && st != CP_ERR_CHARSET && st != CP_ERR_UNSUPPORTED
            && st != CP_ERR_NOMEM)
            abort();
        if (st == CP_OK && flags == 0 && !policy.detect && policy.override_charset == NULL
            && dcm_vr_uses_charset(vr))
            fuzz_round_trip(cs, vr, &back, &out);
    }

    cp_buf_free(&back);
    cp_buf_free(&out);
    dcm_charset_destroy(cs);
    return 0;
}
