/*
 * test_dicom_charset.c - unit tests of the Specific Character Set decoder
 * (PS3.5 section 6.1, Annexes H, I, J and K; PS3.3 C.12.1.1.2).
 *
 * Every Defined Term decodes a sample; the Annex examples decode to the
 * text the standard shows; mislabelled Chinese text is caught and Latin-1
 * text is left alone; the policy's override, default and detection switch
 * behave; bad bytes become U+FFFD; person names split into their groups.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "core/alloc.h"
#include "core/limits.h"
#include "dicom/charset.h"

#define BYTES(s) (const uint8_t *)(s), sizeof(s) - 1

typedef struct sample {
    const char *charset;
    dcm_vr vr;
    const char *bytes;
    const char *text;
} sample;

/* One sample per Defined Term; the bytes were made with Python's codecs. */
static const sample samples[] = {
    { "ISO_IR 6", DCM_VR_PN, "Smith^John", "Smith^John" },
    { "ISO_IR 100", DCM_VR_PN, "Buc^J\351r\364me", "Buc^Jérôme" },
    { "ISO_IR 101", DCM_VR_PN, "Dvo\370\341k^Anton\355n", "Dvořák^Antonín" },
    { "ISO_IR 109", DCM_VR_LO, "\241al G\261arg\261ur", "Ħal Għargħur" },
    { "ISO_IR 110", DCM_VR_LO, "\323ekava^J\376rmala", "Ķekava^Jūrmala" },
    { "ISO_IR 144", DCM_VR_PN, "\273\356\332\341\325\334\321\343\340\323", "Люксембург" },
    { "ISO_IR 127", DCM_VR_PN, "\342\310\307\346\352^\344\346\322\307\321",
      "قباني^لنزار" },
    { "ISO_IR 126", DCM_VR_PN, "\304\351\357\355\365\363\351\357\362", "Διονυσιος" },
    { "ISO_IR 138", DCM_VR_PN, "\371\370\345\357^\343\341\345\370\344", "שרון^דבורה" },
    { "ISO_IR 148", DCM_VR_PN, "\307a\360r\375^I\376\375k", "Çağrı^Işık" },
    { "ISO_IR 203", DCM_VR_LO, "\274uvre 5\244", "Œuvre 5€" },
    { "ISO_IR 13", DCM_VR_PN, "\324\317\300\336^\300\333\263", "ﾔﾏﾀﾞ^ﾀﾛｳ" },
    { "ISO_IR 166", DCM_VR_PN, "\312\301\252\322\302^\343\250\264\325",
      "สมชาย^ใจดี" },
    { "ISO_IR 192", DCM_VR_PN, "Wang^XiaoDong=\347\216\213^\345\260\217\346\235\261=",
      "Wang^XiaoDong=王^小東=" },
    { "GB18030", DCM_VR_PN, "Wang^XiaoDong=\315\365^\320\241\266\253=",
      "Wang^XiaoDong=王^小东=" },
    { "GB18030", DCM_VR_LO, "\225\062\202\066\230\065\356\067\375\223", "𠀀𪚥龘" },
    { "GBK", DCM_VR_PN, "Zhang^San=\325\305^\310\375=", "Zhang^San=张^三=" },
    { "ISO 2022 IR 6", DCM_VR_LO, "Chest PA", "Chest PA" },
    { "ISO 2022 IR 100", DCM_VR_LO, "Buc^J\351r\364me", "Buc^Jérôme" },
    { "ISO 2022 IR 6\\ISO 2022 IR 100", DCM_VR_LO, "X \033-ABuc^J\351r\364me",
      "X Buc^Jérôme" },
    { "ISO 2022 IR 6\\ISO 2022 IR 101", DCM_VR_LO, "X \033-BDvo\370\341k", "X Dvořák" },
    { "ISO 2022 IR 6\\ISO 2022 IR 109", DCM_VR_LO, "X \033-C\241al", "X Ħal" },
    { "ISO 2022 IR 6\\ISO 2022 IR 110", DCM_VR_LO, "X \033-D\323ekava", "X Ķekava" },
    { "ISO 2022 IR 6\\ISO 2022 IR 144", DCM_VR_LO,
      "X \033-L\273\356\332\341\325\334\321\343\340\323", "X Люксембург" },
    { "ISO 2022 IR 6\\ISO 2022 IR 127", DCM_VR_LO, "X \033-G\342\310\307\346\352",
      "X قباني" },
    { "ISO 2022 IR 6\\ISO 2022 IR 126", DCM_VR_LO,
      "X \033-F\304\351\357\355\365\363\351\357\362", "X Διονυσιος" },
    { "ISO 2022 IR 6\\ISO 2022 IR 138", DCM_VR_LO, "X \033-H\371\370\345\357", "X שרון" },
    { "ISO 2022 IR 6\\ISO 2022 IR 148", DCM_VR_LO, "X \033-M\307a\360r\375", "X Çağrı" },
    { "ISO 2022 IR 6\\ISO 2022 IR 203", DCM_VR_LO, "X \033-b\274uvre", "X Œuvre" },
    { "ISO 2022 IR 6\\ISO 2022 IR 166", DCM_VR_LO, "X \033-T\312\301\252\322\302",
      "X สมชาย" },
    { "ISO 2022 IR 13", DCM_VR_PN, "\324\317\300\336^\300\333\263", "ﾔﾏﾀﾞ^ﾀﾛｳ" },
    /* JIS X 0212 (PS3.5 H.3.2 style): 丂 is 0x3021 in JIS X 0212, 山 is 0x3B33 in JIS X 0208. */
    { "\\ISO 2022 IR 87\\ISO 2022 IR 159", DCM_VR_LO,
      "A\033$B;3\033$(D0!\033(BZ", "A山丂Z" },
    { "\\ISO 2022 IR 159", DCM_VR_LO, "\033$(D0!0!\033(B", "丂丂" },
};

/* Decodes bytes under charset (NULL: absent) and policy, checks text and flags. */
static void check_decode(const char *charset, const dcm_charset_policy *policy, dcm_vr vr,
                         const uint8_t *bytes, size_t len, const char *text, unsigned flags)
{
    dcm_charset *cs = NULL;
    cp_buf out = CP_BUF_INIT;
    unsigned got = 0;

    assert_int_equal(dcm_charset_create((const uint8_t *)charset,
                                        charset != NULL ? strlen(charset) : 0, policy, &cs,
                                        NULL),
                     CP_OK);
    assert_int_equal(dcm_charset_decode(cs, vr, bytes, len, &out, &got), CP_OK);
    assert_non_null(out.data);
    assert_string_equal((const char *)out.data, text);
    assert_int_equal(out.len, strlen(text));
    assert_int_equal(got, flags);
    cp_buf_free(&out);
    dcm_charset_destroy(cs);
}

static void test_every_defined_term(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof samples / sizeof samples[0]; i++) {
        const sample *s = &samples[i];

        check_decode(s->charset, NULL, s->vr, (const uint8_t *)s->bytes, strlen(s->bytes),
                     s->text, 0);
    }
}

static void test_padded_and_spelled_terms(void **state)
{
    (void)state;
    check_decode("ISO_IR 100 ", NULL, DCM_VR_PN, BYTES("J\351r\364me "), "Jérôme ", 0);
    check_decode("ISO IR 100", NULL, DCM_VR_PN, BYTES("J\351r\364me"), "Jérôme", 0);
    check_decode("iso-ir 100", NULL, DCM_VR_PN, BYTES("J\351r\364me"), "Jérôme", 0);
    check_decode("GB18030\\ISO_IR 100", NULL, DCM_VR_PN, BYTES("\315\365"), "王", 0);
}

/* PS3.5 J.3: GB18030 with its three component groups. */
static void test_annex_j_gb18030(void **state)
{
    (void)state;
    check_decode("GB18030", NULL, DCM_VR_PN,
                 BYTES("\x57\x61\x6E\x67\x5E\x58\x69\x61\x6F\x44\x6F\x6E\x67\x3D"
                       "\xCD\xF5\x5E\xD0\xA1\xB6\xAB\x3D"),
                 "Wang^XiaoDong=王^小东=", 0);
}

/* PS3.5 H.3.1: JIS X 0208 in G0, back to ASCII before each delimiter. */
static void test_annex_h_japanese(void **state)
{
    (void)state;
    check_decode("\\ISO 2022 IR 87", NULL, DCM_VR_PN,
                 BYTES("Yamada^Tarou=\033$B;3ED\033(B^\033$BB@O:\033(B="
                       "\033$B$d$^$@\033(B^\033$B$?$m$&\033(B"),
                 "Yamada^Tarou=山田^太郎=やまだ^たろう", 0);
    check_decode("ISO 2022 IR 13\\ISO 2022 IR 87", NULL, DCM_VR_PN,
                 BYTES("\324\317\300\336^\300\333\263=\033$B;3ED\033(J^\033$BB@O:\033(J="
                       "\033$B$d$^$@\033(J^\033$B$?$m$&\033(J"),
                 "ﾔﾏﾀﾞ^ﾀﾛｳ=山田^太郎=やまだ^たろう", 0);
}

/* PS3.5 I.2: KS X 1001 in G1, designated again after each delimiter. */
static void test_annex_i_korean(void **state)
{
    (void)state;
    check_decode("\\ISO 2022 IR 149", NULL, DCM_VR_PN,
                 BYTES("Hong^Gildong=\033$)C\373\363^\033$)C\321\316\324\327="
                       "\033$)C\310\253^\033$)C\261\346\265\277"),
                 "Hong^Gildong=洪^吉洞=홍^길동", 0);
    check_decode("\\ISO 2022 IR 149", NULL, DCM_VR_PN,
                 BYTES("\033$)C\261\350\310\361\301\337\033(B "), "김희중 ", 0);
}

/* PS3.5 K: GB 2312 in G1 under ISO 2022 IR 58. */
static void test_annex_k_gb2312(void **state)
{
    (void)state;
    check_decode("ISO 2022 IR 6\\ISO 2022 IR 58", NULL, DCM_VR_PN,
                 BYTES("Zhang^XiaoDong=\033$)A\325\305^\033$)A\320\241\266\253="),
                 "Zhang^XiaoDong=张^小东=", 0);
}

/*
 * The initial code state returns at `\`, at `^` and `=` in PN and at control
 * characters in text: the second α is read in the initial G1 set (Latin-1).
 */
static void test_code_state_resets(void **state)
{
    (void)state;
    check_decode("ISO 2022 IR 100\\ISO 2022 IR 126", NULL, DCM_VR_LO,
                 BYTES("\033-F\341\341\\\341"), "αα\\á", 0);
    check_decode("ISO 2022 IR 100\\ISO 2022 IR 126", NULL, DCM_VR_PN,
                 BYTES("\033-F\341^\341=\033-F\341"), "α^á=α", 0);
    check_decode("ISO 2022 IR 100\\ISO 2022 IR 126", NULL, DCM_VR_LO,
                 BYTES("\033-F\341^\341"), "α^α", 0);
    check_decode("ISO 2022 IR 100\\ISO 2022 IR 126", NULL, DCM_VR_LT,
                 BYTES("\033-F\341\r\n\341\t\033-F\341\f\341"), "α\r\ná\tα\fá", 0);
}

/* A GBK trail byte of 0x5C or 0x5E is part of a character, not a delimiter. */
static void test_gbk_backslash_trail_byte(void **state)
{
    static const uint8_t bytes[] = "Zhang^Cheng=\201\134^\205\136\\\234\134";
    dcm_charset *cs = NULL;
    cp_buf out = CP_BUF_INIT;
    dcm_person_name pn;
    const char *text, *sep;
    unsigned flags = 0;

    (void)state;
    assert_int_equal(dcm_charset_create(BYTES("GBK"), NULL, &cs, NULL), CP_OK);
    assert_int_equal(dcm_charset_decode(cs, DCM_VR_PN, bytes, sizeof bytes - 1, &out, &flags),
                     CP_OK);
    assert_int_equal(flags, 0);
    text = (const char *)out.data;
    assert_string_equal(text, "Zhang^Cheng=乗^區\\淺");

    sep = strchr(text, '\\');
    assert_non_null(sep);
    assert_string_equal(sep + 1, "淺");
    dcm_person_name_split(text, (size_t)(sep - text), &pn);
    assert_int_equal(pn.alphabetic_len, strlen("Zhang^Cheng"));
    assert_memory_equal(pn.alphabetic, "Zhang^Cheng", pn.alphabetic_len);
    assert_int_equal(pn.ideographic_len, strlen("乗^區"));
    assert_memory_equal(pn.ideographic, "乗^區", pn.ideographic_len);
    assert_int_equal(pn.phonetic_len, 0);

    cp_buf_free(&out);
    dcm_charset_destroy(cs);
}

static void test_mislabelled_chinese(void **state)
{
    (void)state;
    check_decode("ISO_IR 100", NULL, DCM_VR_PN,
                 BYTES("Wang^XiaoDong=\315\365^\320\241\266\253="), "Wang^XiaoDong=王^小东=",
                 DCM_CHARSET_MISLABELLED);
    check_decode("ISO_IR 100", NULL, DCM_VR_PN, BYTES("\315\365"), "王",
                 DCM_CHARSET_MISLABELLED);
    check_decode("ISO_IR 100", NULL, DCM_VR_PN, BYTES("Zhang^Cheng=\325\305\201\134^\205\136"),
                 "Zhang^Cheng=张乗^區", DCM_CHARSET_MISLABELLED);
    check_decode("ISO_IR 100", NULL, DCM_VR_LO, BYTES("CT\306\275\311\250"), "CT平扫",
                 DCM_CHARSET_MISLABELLED);
    check_decode("ISO_IR 192", NULL, DCM_VR_PN,
                 BYTES("Wang^XiaoDong=\315\365^\320\241\266\253="), "Wang^XiaoDong=王^小东=",
                 DCM_CHARSET_MISLABELLED);
    check_decode(NULL, NULL, DCM_VR_PN, BYTES("Wang^XiaoDong=\315\365^\320\241\266\253="),
                 "Wang^XiaoDong=王^小东=", DCM_CHARSET_GUESSED);
    check_decode(NULL, NULL, DCM_VR_PN, BYTES("Li^Ming=\300\356^\303\367="), "Li^Ming=李^明=",
                 DCM_CHARSET_GUESSED);
    check_decode(NULL, NULL, DCM_VR_PN, BYTES("Wang^XiaoDong=\347\216\213^\345\260\217"),
                 "Wang^XiaoDong=王^小", DCM_CHARSET_GUESSED);
    check_decode("GBK", NULL, DCM_VR_LO, BYTES("\225\062\202\066"), "𠀀",
                 DCM_CHARSET_MISLABELLED);
    check_decode("GB18030", NULL, DCM_VR_LO, BYTES("\347\216\213"), "王",
                 DCM_CHARSET_MISLABELLED);
}

/* Genuine Latin text must stay Latin, declared or not. */
static void test_latin_not_chinese(void **state)
{
    static const struct {
        const char *bytes;
        const char *text;
    } names[] = {
        { "M\374ller", "Müller" },
        { "Fran\347ais", "Français" },
        { "M\374ller^J\374rgen", "Müller^Jürgen" },
        { "\336\363r\360ur", "Þórður" },
        { "Zo\353^Anne", "Zoë^Anne" },
        { "Gon\347alves^Jos\351", "Gonçalves^José" },
        { "\305ngstr\366m", "Ångström" },
        { "Stra\337e", "Straße" },
        { "H\351l\350ne^Fran\347oise", "Hélène^Françoise" },
        { "\306r\370", "Ærø" },
        { "M\334LLER^J\334RGEN", "MÜLLER^JÜRGEN" },
        { "Bj\366rk^Gu\360mundsd\363ttir", "Björk^Guðmundsdóttir" },
        { "N\372\361ez^I\361aki", "Núñez^Iñaki" },
        { "25\260C", "25°C" },
    };

    (void)state;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const uint8_t *b = (const uint8_t *)names[i].bytes;
        size_t n = strlen(names[i].bytes);

        check_decode("ISO_IR 100", NULL, DCM_VR_PN, b, n, names[i].text, 0);
        check_decode(NULL, NULL, DCM_VR_PN, b, n, names[i].text, DCM_CHARSET_GUESSED);
    }
    check_decode("ISO_IR 101", NULL, DCM_VR_PN, BYTES("Dvo\370\341k^Anton\355n"),
                 "Dvořák^Antonín", 0);
    check_decode("ISO_IR 144", NULL, DCM_VR_PN, BYTES("\270\322\320\335\336\322"), "Иванов",
                 0);
}

static void test_policy(void **state)
{
    dcm_charset_policy override = { NULL, "GB18030", true };
    dcm_charset_policy fallback = { "GB18030", NULL, true };
    dcm_charset_policy off = { NULL, NULL, false };
    dcm_charset_policy latin = { NULL, "ISO_IR 100", false };

    (void)state;
    check_decode("ISO_IR 100", &override, DCM_VR_PN, BYTES("\300\356"), "李",
                 DCM_CHARSET_OVERRIDDEN);
    check_decode("ISO_IR 192", &latin, DCM_VR_PN, BYTES("M\374ller"), "Müller",
                 DCM_CHARSET_OVERRIDDEN);
    check_decode(NULL, &fallback, DCM_VR_PN, BYTES("\300\356^M"), "李^M", 0);
    check_decode("ISO_IR 100", &fallback, DCM_VR_PN, BYTES("M\374ller"), "Müller", 0);
    check_decode(NULL, &fallback, DCM_VR_CS, BYTES("ABC"), "ABC", 0);

    check_decode("ISO_IR 100", &off, DCM_VR_PN, BYTES("\315\365"), "Íõ", 0);
    check_decode(NULL, &off, DCM_VR_PN, BYTES("\315\365"), "Íõ", 0);
    check_decode("ISO_IR 192", &off, DCM_VR_PN, BYTES("\315\365"), "\357\277\275\357\277\275",
                 DCM_CHARSET_REPLACED);
    check_decode("ISO_IR 999", &off, DCM_VR_PN, BYTES("\315\365"), "Íõ",
                 DCM_CHARSET_UNKNOWN_TERM);
}

static void test_unknown_term(void **state)
{
    (void)state;
    assert_false(dcm_charset_is_known("ISO_IR 999", 10));
    check_decode("ISO_IR 999", NULL, DCM_VR_PN, BYTES("Smith"), "Smith",
                 DCM_CHARSET_UNKNOWN_TERM);
    check_decode("ISO_IR 999", NULL, DCM_VR_PN, BYTES("\347\216\213"), "王",
                 DCM_CHARSET_UNKNOWN_TERM | DCM_CHARSET_GUESSED);
    check_decode("ISO_IR 999", NULL, DCM_VR_PN, BYTES("M\374ller"), "Müller",
                 DCM_CHARSET_UNKNOWN_TERM | DCM_CHARSET_GUESSED);
    check_decode("ISO_IR 999", NULL, DCM_VR_CS, BYTES("ABC"), "ABC", 0);
}

static void test_replacement(void **state)
{
    (void)state;
    check_decode("GB18030", NULL, DCM_VR_PN, BYTES("\315\365^\320"), "王^\357\277\275",
                 DCM_CHARSET_REPLACED);
    check_decode("ISO_IR 192", NULL, DCM_VR_PN, BYTES("Wang=\347\216\213\347\216"),
                 "Wang=王\357\277\275", DCM_CHARSET_REPLACED);
    check_decode("\\ISO 2022 IR 87", NULL, DCM_VR_PN, BYTES("\033$B;3E"), "山\357\277\275",
                 DCM_CHARSET_REPLACED);
    check_decode("\\ISO 2022 IR 149", NULL, DCM_VR_PN, BYTES("\033$)C\373\363\373"),
                 "洪\357\277\275", DCM_CHARSET_REPLACED);
    check_decode("ISO_IR 100", NULL, DCM_VR_PN, BYTES("A\033$ZB"), "A\357\277\275$ZB",
                 DCM_CHARSET_REPLACED);
    check_decode("ISO_IR 166", NULL, DCM_VR_LO, BYTES("\333"), "\357\277\275",
                 DCM_CHARSET_REPLACED);
    check_decode("\\ISO 2022 IR 159", NULL, DCM_VR_LO, BYTES("\033$(Dqq0!\033(B"),
                 "\357\277\275丂", DCM_CHARSET_REPLACED);
    check_decode("\\ISO 2022 IR 87", NULL, DCM_VR_LO, BYTES("\033$B)!;3"),
                 "\357\277\275山", DCM_CHARSET_REPLACED);
    check_decode("ISO 2022 IR 6\\ISO 2022 IR 87", NULL, DCM_VR_LO, BYTES("A\351"), "Aé",
                 DCM_CHARSET_MISLABELLED);
}

static void test_default_repertoire_vrs(void **state)
{
    (void)state;
    check_decode("GB18030", NULL, DCM_VR_CS, BYTES("ORIGINAL\\PRIMARY"), "ORIGINAL\\PRIMARY", 0);
    check_decode("GB18030", NULL, DCM_VR_CS, BYTES("\315\365"), "Íõ", 0);
    check_decode("ISO_IR 192", NULL, DCM_VR_UI, BYTES("1.2.3"), "1.2.3", 0);
    check_decode("\\ISO 2022 IR 87", NULL, DCM_VR_SH, BYTES(""), "", 0);
}

static void test_appends(void **state)
{
    dcm_charset *cs = NULL;
    cp_buf out = CP_BUF_INIT;

    (void)state;
    assert_int_equal(dcm_charset_create(BYTES("ISO_IR 100"), NULL, &cs, NULL), CP_OK);
    assert_int_equal(cp_buf_append_str(&out, "x="), CP_OK);
    assert_int_equal(dcm_charset_decode(cs, DCM_VR_LO, BYTES("\351"), &out, NULL), CP_OK);
    assert_int_equal(dcm_charset_decode(cs, DCM_VR_LO, BYTES("\350"), &out, NULL), CP_OK);
    assert_string_equal((const char *)out.data, "x=éè");
    assert_int_equal(dcm_charset_decode(cs, DCM_VR_LO, (const uint8_t *)"", SIZE_MAX / 2,
                                        &out, NULL),
                     CP_ERR_LIMIT);
    assert_string_equal((const char *)out.data, "x=éè");
    cp_buf_free(&out);
    dcm_charset_destroy(cs);
}

/* Every allocation of create and decode may fail; each failure is reported. */
static void test_out_of_memory(void **state)
{
    static const uint8_t jis[] = "Yamada^Tarou=\033$B;3ED\033(B^\033$BB@O:\033(B";
    bool done = false;

    (void)state;
    for (long n = 0; !done; n++) {
        dcm_charset *cs = NULL;
        cp_buf out = CP_BUF_INIT;
        cp_status st;

        cp_alloc_fail_after(n);
        st = dcm_charset_create(BYTES("\\ISO 2022 IR 87"), NULL, &cs, NULL);
        if (st == CP_OK) {
            st = dcm_charset_decode(cs, DCM_VR_PN, jis, sizeof jis - 1, &out, NULL);
            if (st == CP_OK)
                assert_string_equal((const char *)out.data, "Yamada^Tarou=山田^太郎");
            else
                assert_true(out.len == 0);
        }
        cp_alloc_fail_after(-1);
        assert_true(st == CP_OK || st == CP_ERR_NOMEM);
        done = st == CP_OK;
        cp_buf_free(&out);
        dcm_charset_destroy(cs);
        assert_true(n < 100);
    }
}

static void check_encode(const char *term, const char *text, const uint8_t *bytes, size_t len,
                         cp_status want)
{
    cp_buf out = CP_BUF_INIT;

    assert_int_equal(dcm_charset_encode(term, text, strlen(text), &out), want);
    if (want == CP_OK) {
        assert_int_equal(out.len, len);
        assert_memory_equal(out.data, bytes, len);
    } else {
        assert_int_equal(out.len, 0);
    }
    cp_buf_free(&out);
}

static void test_encode(void **state)
{
    (void)state;
    check_encode("GB18030", "Wang^XiaoDong=王^小东=",
                 BYTES("Wang^XiaoDong=\315\365^\320\241\266\253="), CP_OK);
    check_encode("GB18030", "𠀀", BYTES("\225\062\202\066"), CP_OK);
    check_encode("GBK", "乗^區", BYTES("\201\134^\205\136"), CP_OK);
    check_encode("GBK", "𠀀", BYTES(""), CP_ERR_CHARSET);
    check_encode("ISO_IR 100", "Buc^Jérôme", BYTES("Buc^J\351r\364me"), CP_OK);
    check_encode("ISO_IR 100 ", "王", BYTES(""), CP_ERR_CHARSET);
    check_encode("ISO_IR 144", "Люксембург",
                 BYTES("\273\356\332\341\325\334\321\343\340\323"), CP_OK);
    check_encode("ISO_IR 13", "ﾔﾏﾀﾞ^ﾀﾛｳ", BYTES("\324\317\300\336^\300\333\263"),
                 CP_OK);
    check_encode("ISO_IR 13", "山", BYTES(""), CP_ERR_CHARSET);
    check_encode("ISO_IR 192", "王^小東", BYTES("\347\216\213^\345\260\217\346\235\261"), CP_OK);
    check_encode("ISO_IR 6", "Smith^John", BYTES("Smith^John"), CP_OK);
    check_encode("ISO_IR 6", "Müller", BYTES(""), CP_ERR_CHARSET);
    check_encode("ISO 2022 IR 100", "Jérôme", BYTES("J\351r\364me"), CP_OK);
    check_encode("ISO 2022 IR 87", "Yamada", BYTES("Yamada"), CP_OK);
    check_encode("ISO 2022 IR 87", "Yamada^Tarou=山田^太郎=やまだ^たろう",
                 BYTES("Yamada^Tarou=\033$B;3ED\033(B^\033$BB@O:\033(B="
                       "\033$B$d$^$@\033(B^\033$B$?$m$&\033(B"),
                 CP_OK);
    check_encode("ISO 2022 IR 87", "ﾔ", BYTES(""), CP_ERR_CHARSET);
    check_encode("ISO 2022 IR 159", "丂丂", BYTES("\033$(D0!0!\033(B"), CP_OK);
    check_encode("ISO 2022 IR 149", "Hong^Gildong=洪^吉洞=홍^길동",
                 BYTES("Hong^Gildong=\033$)C\373\363^\033$)C\321\316\324\327="
                       "\033$)C\310\253^\033$)C\261\346\265\277"),
                 CP_OK);
    check_encode("ISO 2022 IR 149", "ก", BYTES(""), CP_ERR_CHARSET);
    check_encode("ISO 2022 IR 58", "Zhang^XiaoDong=张^小东=",
                 BYTES("Zhang^XiaoDong=\033$)A\325\305^\033$)A\320\241\266\253="), CP_OK);
    check_encode("ISO_IR 999", "Smith", BYTES(""), CP_ERR_UNSUPPORTED);
    check_encode("ISO_IR 100", "\377bad", BYTES(""), CP_ERR_CHARSET);
}

static void test_is_known(void **state)
{
    static const char *const known[] = {
        "ISO_IR 6", "ISO_IR 100", "ISO_IR 101", "ISO_IR 109", "ISO_IR 110", "ISO_IR 144",
        "ISO_IR 127", "ISO_IR 126", "ISO_IR 138", "ISO_IR 148", "ISO_IR 13", "ISO_IR 166",
        "ISO_IR 192", "GB18030", "GBK", "ISO 2022 IR 6", "ISO 2022 IR 100", "ISO 2022 IR 13",
        "ISO 2022 IR 87", "ISO 2022 IR 159", "ISO 2022 IR 149", "ISO 2022 IR 58",
        "ISO 2022 IR 166", "ISO_IR 192  ",
    };

    (void)state;
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        assert_true(dcm_charset_is_known(known[i], strlen(known[i])));
    assert_false(dcm_charset_is_known("", 0));
    assert_false(dcm_charset_is_known("ISO_IR 1000", 11));
    assert_false(dcm_charset_is_known("ISO 2022 IR 165", 15));
    assert_false(dcm_charset_is_known("UTF-8", 5));
    assert_true(dcm_charset_is_known("GB18030XYZ", 7));
}

static void check_split(const char *name, const char *a, const char *i, const char *p)
{
    dcm_person_name pn;

    dcm_person_name_split(name, strlen(name), &pn);
    assert_int_equal(pn.alphabetic_len, strlen(a));
    assert_memory_equal(pn.alphabetic, a, pn.alphabetic_len);
    assert_int_equal(pn.ideographic_len, strlen(i));
    assert_memory_equal(pn.ideographic, i, pn.ideographic_len);
    assert_int_equal(pn.phonetic_len, strlen(p));
    assert_memory_equal(pn.phonetic, p, pn.phonetic_len);
}

static void test_person_name_split(void **state)
{
    dcm_person_name pn;

    (void)state;
    check_split("Yamada^Tarou=山田^太郎=やまだ^たろう", "Yamada^Tarou", "山田^太郎",
                "やまだ^たろう");
    check_split("Wang^XiaoDong=王^小东=", "Wang^XiaoDong", "王^小东", "");
    check_split("Smith^John", "Smith^John", "", "");
    check_split("=张三", "", "张三", "");
    check_split("Doe^J  =X =Y  ", "Doe^J", "X", "Y");
    check_split("", "", "", "");

    dcm_person_name_split(NULL, 0, &pn);
    assert_non_null(pn.alphabetic);
    assert_int_equal(pn.alphabetic_len + pn.ideographic_len + pn.phonetic_len, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_defined_term),
        cmocka_unit_test(test_padded_and_spelled_terms),
        cmocka_unit_test(test_annex_j_gb18030),
        cmocka_unit_test(test_annex_h_japanese),
        cmocka_unit_test(test_annex_i_korean),
        cmocka_unit_test(test_annex_k_gb2312),
        cmocka_unit_test(test_code_state_resets),
        cmocka_unit_test(test_gbk_backslash_trail_byte),
        cmocka_unit_test(test_mislabelled_chinese),
        cmocka_unit_test(test_latin_not_chinese),
        cmocka_unit_test(test_policy),
        cmocka_unit_test(test_unknown_term),
        cmocka_unit_test(test_replacement),
        cmocka_unit_test(test_default_repertoire_vrs),
        cmocka_unit_test(test_appends),
        cmocka_unit_test(test_out_of_memory),
        cmocka_unit_test(test_encode),
        cmocka_unit_test(test_is_known),
        cmocka_unit_test(test_person_name_split),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
