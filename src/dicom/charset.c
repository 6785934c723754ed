/*
 * charset.c - Specific Character Set (0008,0005) to UTF-8 and back.
 *
 * Implements the character repertoires and the ISO 2022 code extension
 * technique of PS3.5 section 6.1 (6.1.2.5 for the escape sequences and for
 * where the initial code state returns), the Defined Terms and escape
 * sequences of PS3.3 C.12.1.1.2 (tables C.12-2 to C.12-5), the examples of
 * PS3.5 Annexes H (Japanese), I (Korean), J (Chinese) and K (GB2312), and the
 * component groups of person names (PS3.5 6.2.1.2). glibc iconv converts the
 * sets; this file picks the set, follows escape sequences and judges whether
 * the bytes fit the declared set (rules in charset.h).
 */
#include "dicom/charset.h"

#include <errno.h>
#include <iconv.h>
#include <stdint.h>
#include <string.h>

#include "core/alloc.h"
#include "core/limits.h"
#include "dicom/tag.h"

#define CS_ESC 0x1B

/* The iconv converters used, each opened at most once per decoder. */
typedef enum {
    CODEC_LATIN1,
    CODEC_LATIN2,
    CODEC_LATIN3,
    CODEC_LATIN4,
    CODEC_CYRILLIC,
    CODEC_ARABIC,
    CODEC_GREEK,
    CODEC_HEBREW,
    CODEC_LATIN5,
    CODEC_LATIN9,
    CODEC_THAI,
    CODEC_EUC_JP,
    CODEC_EUC_KR,
    CODEC_EUC_CN,
    CODEC_GBK,
    CODEC_GB18030,
    CODEC_COUNT
} cs_codec;

static const char *const codec_names[CODEC_COUNT] = {
    [CODEC_LATIN1] = "ISO-8859-1",
    [CODEC_LATIN2] = "ISO-8859-2",
    [CODEC_LATIN3] = "ISO-8859-3",
    [CODEC_LATIN4] = "ISO-8859-4",
    [CODEC_CYRILLIC] = "ISO-8859-5",
    [CODEC_ARABIC] = "ISO-8859-6",
    [CODEC_GREEK] = "ISO-8859-7",
    [CODEC_HEBREW] = "ISO-8859-8",
    [CODEC_LATIN5] = "ISO-8859-9",
    [CODEC_LATIN9] = "ISO-8859-15",
    [CODEC_THAI] = "TIS-620",
    [CODEC_EUC_JP] = "EUC-JP",
    [CODEC_EUC_KR] = "EUC-KR",
    [CODEC_EUC_CN] = "GB2312",
    [CODEC_GBK] = "GBK",
    [CODEC_GB18030] = "GB18030",
};

/* How the bytes of a graphic set are laid out. */
typedef enum {
    KIND_ASCII,         /* G0: ISO-IR 6, and JIS X 0201 romaji read as ASCII */
    KIND_SB,            /* G1: a 96-character set, one byte per character */
    KIND_KATAKANA,      /* G1: JIS X 0201 katakana, 0xA1-0xDF */
    KIND_JIS0208,       /* G0: two bytes 0x21-0x7E, decoded as EUC-JP */
    KIND_JIS0212,       /* G0: two bytes 0x21-0x7E, as EUC-JP 0x8F b1 b2 */
    KIND_MB,            /* G1: two bytes 0xA1-0xFE (KS X 1001, GB 2312) */
} cs_kind;

/* A graphic character set that an escape sequence designates (PS3.3 C.12-3, C.12-4). */
typedef struct cs_set {
    uint8_t kind;
    uint8_t codec;
    uint8_t g;              /* designated into G0 or G1 */
    bool latin;             /* Latin script: text mislabelled as it may be GB18030 */
    bool latin1_symbols;    /* 0xA0-0xBF hold no letters, as in ISO-IR 100 */
    const char *esc;        /* the bytes after ESC that designate it */
} cs_set;

enum {
    SET_ASCII, SET_ROMAJI, SET_KATAKANA, SET_LATIN1, SET_LATIN2, SET_LATIN3,
    SET_LATIN4, SET_CYRILLIC, SET_ARABIC, SET_GREEK, SET_HEBREW, SET_LATIN5,
    SET_LATIN9, SET_THAI, SET_JIS0208, SET_JIS0212, SET_KSX1001, SET_GB2312,
    SET_COUNT
};

static const cs_set cs_sets[SET_COUNT] = {
    [SET_ASCII] = { KIND_ASCII, 0, 0, true, true, "(B" },
    [SET_ROMAJI] = { KIND_ASCII, 0, 0, true, true, "(J" },
    [SET_KATAKANA] = { KIND_KATAKANA, 0, 1, false, false, ")I" },
    [SET_LATIN1] = { KIND_SB, CODEC_LATIN1, 1, true, true, "-A" },
    [SET_LATIN2] = { KIND_SB, CODEC_LATIN2, 1, true, false, "-B" },
    [SET_LATIN3] = { KIND_SB, CODEC_LATIN3, 1, true, false, "-C" },
    [SET_LATIN4] = { KIND_SB, CODEC_LATIN4, 1, true, false, "-D" },
    [SET_CYRILLIC] = { KIND_SB, CODEC_CYRILLIC, 1, false, false, "-L" },
    [SET_ARABIC] = { KIND_SB, CODEC_ARABIC, 1, false, false, "-G" },
    [SET_GREEK] = { KIND_SB, CODEC_GREEK, 1, false, false, "-F" },
    [SET_HEBREW] = { KIND_SB, CODEC_HEBREW, 1, false, false, "-H" },
    [SET_LATIN5] = { KIND_SB, CODEC_LATIN5, 1, true, true, "-M" },
    [SET_LATIN9] = { KIND_SB, CODEC_LATIN9, 1, true, false, "-b" },
    [SET_THAI] = { KIND_SB, CODEC_THAI, 1, false, false, "-T" },
    [SET_JIS0208] = { KIND_JIS0208, CODEC_EUC_JP, 0, false, false, "$B" },
    [SET_JIS0212] = { KIND_JIS0212, CODEC_EUC_JP, 0, false, false, "$(D" },
    [SET_KSX1001] = { KIND_MB, CODEC_EUC_KR, 1, false, false, "$)C" },
    [SET_GB2312] = { KIND_MB, CODEC_EUC_CN, 1, false, false, "$)A" },
};

/* How a Defined Term is used: one set alone, with code extensions, or a stand-alone encoding. */
typedef enum {
    FORM_PLAIN,
    FORM_2022,
    FORM_UTF8,
    FORM_GB18030,
    FORM_GBK,
} cs_form;

typedef struct cs_term {
    const char *name;
    uint8_t form;
    uint8_t set;            /* for FORM_PLAIN and FORM_2022 */
} cs_term;

/* PS3.3 C.12.1.1.2, tables C.12-2 to C.12-5, plus Latin-9 (ISO-IR 203). */
static const cs_term cs_terms[] = {
    { "ISO_IR 6", FORM_PLAIN, SET_ASCII },
    { "ISO_IR 100", FORM_PLAIN, SET_LATIN1 },
    { "ISO_IR 101", FORM_PLAIN, SET_LATIN2 },
    { "ISO_IR 109", FORM_PLAIN, SET_LATIN3 },
    { "ISO_IR 110", FORM_PLAIN, SET_LATIN4 },
    { "ISO_IR 144", FORM_PLAIN, SET_CYRILLIC },
    { "ISO_IR 127", FORM_PLAIN, SET_ARABIC },
    { "ISO_IR 126", FORM_PLAIN, SET_GREEK },
    { "ISO_IR 138", FORM_PLAIN, SET_HEBREW },
    { "ISO_IR 148", FORM_PLAIN, SET_LATIN5 },
    { "ISO_IR 203", FORM_PLAIN, SET_LATIN9 },
    { "ISO_IR 13", FORM_PLAIN, SET_KATAKANA },
    { "ISO_IR 166", FORM_PLAIN, SET_THAI },
    { "ISO_IR 192", FORM_UTF8, 0 },
    { "GB18030", FORM_GB18030, 0 },
    { "GBK", FORM_GBK, 0 },
    { "ISO 2022 IR 6", FORM_2022, SET_ASCII },
    { "ISO 2022 IR 100", FORM_2022, SET_LATIN1 },
    { "ISO 2022 IR 101", FORM_2022, SET_LATIN2 },
    { "ISO 2022 IR 109", FORM_2022, SET_LATIN3 },
    { "ISO 2022 IR 110", FORM_2022, SET_LATIN4 },
    { "ISO 2022 IR 144", FORM_2022, SET_CYRILLIC },
    { "ISO 2022 IR 127", FORM_2022, SET_ARABIC },
    { "ISO 2022 IR 126", FORM_2022, SET_GREEK },
    { "ISO 2022 IR 138", FORM_2022, SET_HEBREW },
    { "ISO 2022 IR 148", FORM_2022, SET_LATIN5 },
    { "ISO 2022 IR 203", FORM_2022, SET_LATIN9 },
    { "ISO 2022 IR 13", FORM_2022, SET_KATAKANA },
    { "ISO 2022 IR 166", FORM_2022, SET_THAI },
    { "ISO 2022 IR 87", FORM_2022, SET_JIS0208 },
    { "ISO 2022 IR 159", FORM_2022, SET_JIS0212 },
    { "ISO 2022 IR 149", FORM_2022, SET_KSX1001 },
    { "ISO 2022 IR 58", FORM_2022, SET_GB2312 },
};

#define CS_TERM_COUNT (sizeof cs_terms / sizeof cs_terms[0])

/* Where the set in force came from; it decides which flag a guess raises. */
typedef enum {
    ORIGIN_ABSENT,
    ORIGIN_DEFAULT,
    ORIGIN_DECLARED,
    ORIGIN_OVERRIDE,
} cs_origin;

struct dcm_charset {
    const cs_term *primary;     /* value 1, or NULL for the default repertoire */
    int init_g0;                /* the initial code state (PS3.5 6.1.2.5.3): */
    int init_g1;                /* ISO-IR 6 in G0, value 1's set in G1, or -1 */
    int fallback_g1;            /* the only two-byte G1 set declared, or -1 */
    uint8_t origin;
    bool unknown;
    bool detect;
    iconv_t cd[CODEC_COUNT];
    bool cd_tried[CODEC_COUNT];
};

/* Decoded text on its way to the caller's buffer, with its cap. */
typedef struct cs_out {
    cp_buf *buf;
    size_t max;                 /* buf->len may not grow past this */
    size_t replaced;            /* U+FFFD written */
} cs_out;

/* A point to return to when a guess is abandoned. */
typedef struct cs_mark {
    size_t len;
    size_t replaced;
} cs_mark;

/* What a GB18030 reading of Latin-labelled bytes looks like (see gb_scan). */
typedef struct gb_score {
    unsigned strong;
    unsigned ambiguous;
    unsigned weak;
    unsigned latin_word;    /* weak pairs a lower-case letter follows: a Latin word goes on */
} gb_score;

/* --- Defined Terms ---------------------------------------------------------- */

static bool term_char_ignored(char c)
{
    return c == ' ' || c == '_' || c == '-';
}

static char term_upper(char c)
{
    return c >= 'a' && c <= 'z' ? (char)(c - 'a' + 'A') : c;
}

/*
 * Compares a term from the field with a Defined Term, ignoring case, spaces,
 * underscores and hyphens: "ISO IR 100" and "ISO-IR 100" are common.
 */
static bool term_matches(const char *s, size_t len, const char *name)
{
    size_t i = 0;

    for (;;) {
        while (i < len && term_char_ignored(s[i]))
            i++;
        while (*name != '\0' && term_char_ignored(*name))
            name++;
        if (i == len || *name == '\0')
            return i == len && *name == '\0';
        if (term_upper(s[i]) != *name)
            return false;
        i++;
        name++;
    }
}

static const cs_term *term_find(const char *s, size_t len)
{
    if (len == 0)
        return NULL;
    for (size_t i = 0; i < CS_TERM_COUNT; i++) {
        if (term_matches(s, len, cs_terms[i].name))
            return &cs_terms[i];
    }
    return NULL;
}

static bool is_padding(uint8_t c)
{
    return c == ' ' || c == '\0';
}

bool dcm_charset_is_known(const char *term, size_t len)
{
    if (term == NULL)
        return false;
    while (len > 0 && is_padding((uint8_t)term[len - 1]))
        len--;
    return term_find(term, len) != NULL;
}

/* --- creation --------------------------------------------------------------- */

static void charset_note_g1(dcm_charset *cs, const cs_term *t, int *mb_count)
{
    if (t->form != FORM_2022 && t->form != FORM_PLAIN)
        return;
    if (cs_sets[t->set].kind != KIND_MB || cs->fallback_g1 == t->set)
        return;
    cs->fallback_g1 = t->set;
    (*mb_count)++;
}

/*
 * Reads the terms of a 0008,0005 value. Value 1 fixes the initial code
 * state; the others only matter for a two-byte G1 set that a writer forgot
 * to designate before using it.
 */
static void charset_parse(dcm_charset *cs, const uint8_t *v, size_t len)
{
    size_t start = 0;
    unsigned index = 0;
    int mb_count = 0;

    for (size_t i = 0; i <= len; i++) {
        size_t a = start, b = i;
        const cs_term *t;

        if (i < len && v[i] != '\\')
            continue;
        start = i + 1;
        while (a < b && is_padding(v[a]))
            a++;
        while (b > a && is_padding(v[b - 1]))
            b--;

        if (index++ >= DCM_CHARSET_TERMS_MAX) {
            cs->unknown = true;
            break;
        }
        t = term_find((const char *)v + a, b - a);
        if (t == NULL && b > a)
            cs->unknown = true;
        if (t == NULL)
            continue;
        if (index == 1) {
            cs->primary = t;
            if (t->form == FORM_UTF8 || t->form == FORM_GB18030 || t->form == FORM_GBK)
                break;
            if (cs_sets[t->set].g == 1)
                cs->init_g1 = t->set;
        }
        charset_note_g1(cs, t, &mb_count);
    }

    if (mb_count != 1 || cs->init_g1 >= 0)
        cs->fallback_g1 = -1;
}

static bool has_text(const uint8_t *v, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (!is_padding(v[i]) && v[i] != '\\')
            return true;
    }
    return false;
}

cp_status dcm_charset_create(const uint8_t *value, size_t len, const dcm_charset_policy *policy,
                             dcm_charset **out, cp_error *err)
{
    dcm_charset *cs;
    const char *override = policy != NULL ? policy->override_charset : NULL;
    const char *fallback = policy != NULL ? policy->default_charset : NULL;

    *out = NULL;
    cs = cp_calloc(1, sizeof *cs);
    if (cs == NULL)
        return cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET,
                            DCM_TAG_SPECIFIC_CHARACTER_SET,
                            "no memory for a character set decoder");

    cs->init_g0 = SET_ASCII;
    cs->init_g1 = -1;
    cs->fallback_g1 = -1;
    cs->detect = policy != NULL ? policy->detect : true;
    for (int i = 0; i < CODEC_COUNT; i++)
        cs->cd[i] = (iconv_t)-1;

    if (value == NULL)
        len = 0;
    if (override != NULL && override[0] != '\0') {
        cs->origin = ORIGIN_OVERRIDE;
        charset_parse(cs, (const uint8_t *)override, strlen(override));
    } else if (len > 0 && has_text(value, len)) {
        cs->origin = ORIGIN_DECLARED;
        charset_parse(cs, value, len);
    } else if (fallback != NULL && fallback[0] != '\0') {
        cs->origin = ORIGIN_DEFAULT;
        charset_parse(cs, (const uint8_t *)fallback, strlen(fallback));
    } else {
        cs->origin = ORIGIN_ABSENT;
    }

    *out = cs;
    return CP_OK;
}

void dcm_charset_destroy(dcm_charset *cs)
{
    if (cs == NULL)
        return;
    for (int i = 0; i < CODEC_COUNT; i++) {
        if (cs->cd[i] != (iconv_t)-1)
            iconv_close(cs->cd[i]);
    }
    cp_free(cs);
}

/* --- output ----------------------------------------------------------------- */

static cp_status out_put(cs_out *o, const void *p, size_t n)
{
    if (n > o->max - o->buf->len)
        return CP_ERR_LIMIT;
    return cp_buf_append(o->buf, p, n);
}

static cp_status out_replacement(cs_out *o)
{
    static const uint8_t fffd[3] = { 0xEF, 0xBF, 0xBD };

    o->replaced++;
    return out_put(o, fffd, sizeof fffd);
}

static cp_status out_codepoint(cs_out *o, uint32_t c)
{
    uint8_t u[3];

    if (c < 0x80) {
        u[0] = (uint8_t)c;
        return out_put(o, u, 1);
    }
    if (c < 0x800) {
        u[0] = (uint8_t)(0xC0 | c >> 6);
        u[1] = (uint8_t)(0x80 | (c & 0x3F));
        return out_put(o, u, 2);
    }
    u[0] = (uint8_t)(0xE0 | c >> 12);
    u[1] = (uint8_t)(0x80 | (c >> 6 & 0x3F));
    u[2] = (uint8_t)(0x80 | (c & 0x3F));
    return out_put(o, u, 3);
}

static cs_mark out_mark(const cs_out *o)
{
    cs_mark m = { o->buf->len, o->replaced };

    return m;
}

static void out_rewind(cs_out *o, cs_mark m)
{
    o->buf->len = m.len;
    o->replaced = m.replaced;
    if (o->buf->data != NULL)
        o->buf->data[m.len] = '\0';
}

static cp_status out_latin1(cs_out *o, const uint8_t *p, size_t n)
{
    cp_status st = CP_OK;

    for (size_t i = 0; i < n && st == CP_OK; i++)
        st = out_codepoint(o, p[i]);
    return st;
}

/* --- UTF-8 ------------------------------------------------------------------ */

/*
 * Length of the well-formed UTF-8 sequence at p, or 0 with *skip set to the
 * bytes of its longest ill-formed prefix (one U+FFFD per such prefix).
 */
static size_t utf8_sequence(const uint8_t *p, size_t n, size_t *skip)
{
    uint8_t b = p[0], lo = 0x80, hi = 0xBF;
    size_t need, i;

    *skip = 1;
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

    if (b == 0xE0)
        lo = 0xA0;
    else if (b == 0xED)
        hi = 0x9F;
    else if (b == 0xF0)
        lo = 0x90;
    else if (b == 0xF4)
        hi = 0x8F;

    for (i = 1; i < need; i++) {
        if (i >= n || p[i] < lo || p[i] > hi) {
            *skip = i;
            return 0;
        }
        lo = 0x80;
        hi = 0xBF;
    }
    return need;
}

static bool utf8_valid(const uint8_t *p, size_t n)
{
    size_t i = 0, skip, k;

    while (i < n) {
        k = utf8_sequence(p + i, n - i, &skip);
        if (k == 0)
            return false;
        i += k;
    }
    return true;
}

static cp_status out_utf8(cs_out *o, const uint8_t *p, size_t n)
{
    size_t i = 0, good = 0, skip, k;
    cp_status st = CP_OK;

    while (i < n && st == CP_OK) {
        k = utf8_sequence(p + i, n - i, &skip);
        if (k > 0) {
            i += k;
            continue;
        }
        st = out_put(o, p + good, i - good);
        if (st == CP_OK)
            st = out_replacement(o);
        i += skip;
        good = i;
    }
    if (st == CP_OK)
        st = out_put(o, p + good, n - good);
    return st;
}

/* --- iconv ------------------------------------------------------------------ */

/* The cached converter of codec; *cd is (iconv_t)-1 when glibc lacks it. */
static cp_status codec_get(dcm_charset *cs, int codec, iconv_t *cd)
{
    if (!cs->cd_tried[codec]) {
        cs->cd[codec] = iconv_open("UTF-8", codec_names[codec]);
        if (cs->cd[codec] == (iconv_t)-1 && errno == ENOMEM)
            return CP_ERR_NOMEM;
        cs->cd_tried[codec] = true;
    }
    *cd = cs->cd[codec];
    return CP_OK;
}

/* Without a converter only ASCII survives. */
static cp_status out_ascii_only(cs_out *o, const uint8_t *p, size_t n)
{
    cp_status st = CP_OK;

    for (size_t i = 0; i < n && st == CP_OK; i++)
        st = p[i] < 0x80 ? out_put(o, p + i, 1) : out_replacement(o);
    return st;
}

/*
 * Converts n bytes of `codec` to UTF-8, writing U+FFFD for each byte that
 * starts no valid character and going on after it.
 */
static cp_status convert(dcm_charset *cs, int codec, const uint8_t *in, size_t n, cs_out *o)
{
    iconv_t cd;
    cp_status st = codec_get(cs, codec, &cd);

    if (st != CP_OK)
        return st;
    if (cd == (iconv_t)-1)
        return out_ascii_only(o, in, n);

    iconv(cd, NULL, NULL, NULL, NULL);
    while (n > 0) {
        size_t left = o->max - o->buf->len;
        size_t room = n < (SIZE_MAX - 8) / 4 ? n * 4 + 8 : SIZE_MAX;
        char *ip = (char *)(uintptr_t)in, *op;
        size_t il = n, ol, r;
        int e;

        if (room > left)
            room = left;
        if (room == 0)
            return CP_ERR_LIMIT;
        st = cp_buf_reserve(o->buf, room);
        if (st != CP_OK)
            return st;

        op = (char *)o->buf->data + o->buf->len;
        ol = room;
        r = iconv(cd, &ip, &il, &op, &ol);
        e = errno;
        o->buf->len += room - ol;
        o->buf->data[o->buf->len] = '\0';
        in += n - il;
        if (r != (size_t)-1)
            break;

        if (e == E2BIG) {
            if (room == left || il == n)
                return CP_ERR_LIMIT;
            n = il;
            continue;
        }
        if (il == 0)
            break;
        st = out_replacement(o);
        if (st != CP_OK)
            return st;
        in++;
        n = il - 1;
        iconv(cd, NULL, NULL, NULL, NULL);
    }
    return CP_OK;
}

/* --- GB18030 detection ------------------------------------------------------ */

static bool is_ascii_letter(uint8_t c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

/*
 * Reads the bytes as GB18030 and sorts its multi-byte characters by how
 * unlike Latin text they look. Latin text puts one accented letter between
 * ASCII letters ("Müller": FC 6C), which GB18030 takes as a lead byte and an
 * ASCII trail byte: weak. With a C1 control as lead (0x81-0x9F) such a pair
 * is no Latin letter either and counts for neither side. Two high bytes that
 * stand apart from ASCII letters, or that hold a byte Latin text does not use
 * in names (C1 controls, and for ISO-IR 100 the symbols 0xA0-0xBF), are
 * strong. Two high letters inside a Latin word are ambiguous. Returns false
 * when a high byte fits no GB18030 character, which settles it: the text is
 * not GB18030.
 */
static bool gb_scan(const uint8_t *p, size_t n, bool latin1_symbols, gb_score *s)
{
    uint8_t sym = latin1_symbols ? 0xC0 : 0xA0;
    size_t i = 0;

    memset(s, 0, sizeof *s);
    while (i < n) {
        uint8_t b = p[i], t;

        if (b < 0x80) {
            i++;
            continue;
        }
        if (b == 0x80 || b == 0xFF || i + 1 >= n)
            return false;
        t = p[i + 1];

        if (t >= 0x30 && t <= 0x39) {
            if (i + 3 >= n || p[i + 2] < 0x81 || p[i + 2] == 0xFF
                || p[i + 3] < 0x30 || p[i + 3] > 0x39)
                return false;
            s->strong++;
            i += 4;
            continue;
        }
        if (t < 0x40 || t == 0x7F || t == 0xFF)
            return false;

        if (t < 0x80) {
            if (b >= 0xA0)
                s->weak++;
            if (b >= 0xA0 && is_ascii_letter(t) && i + 2 < n && p[i + 2] >= 'a' &&
                p[i + 2] <= 'z')
                s->latin_word++;
        } else if (b < sym || t < sym)
            s->strong++;
        else if ((i > 0 && is_ascii_letter(p[i - 1]))
                 || (i + 2 < n && is_ascii_letter(p[i + 2])))
            s->ambiguous++;
        else
            s->strong++;
        i += 2;
    }
    return true;
}

/* Private-use code points: GB18030's user-defined areas, never real names. */
static bool utf8_has_private_use(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i + 2 < n; i++) {
        if (p[i] == 0xEE || (p[i] == 0xEF && p[i + 1] <= 0xA3))
            return true;
        if (p[i] == 0xF3 && p[i + 1] >= 0xB0)
            return true;
        if (p[i] == 0xF4)
            return true;
    }
    return false;
}

/*
 * Decodes the bytes as GB18030 when they look like Chinese text rather than
 * the Latin text they were labelled as; *taken says whether they did. Needs
 * a character unlike Latin text and more Chinese-looking characters than
 * Latin-looking ones, a clean decoding and no private-use result.
 */
static cp_status try_gb18030(dcm_charset *cs, const uint8_t *p, size_t n, bool latin1_symbols,
                             cs_out *o, bool *taken)
{
    gb_score s;
    cs_mark m = out_mark(o);
    cp_status st;

    *taken = false;
    if (!gb_scan(p, n, latin1_symbols, &s))
        return CP_OK;
    /*
     * An accented letter, a letter and then more lower-case letters ("ñez",
     * "üller") is how Latin words run on; a Chinese name does not do that,
     * so one such run keeps the declared set.
     */
    if (s.strong == 0 || s.strong + s.ambiguous <= s.weak || s.latin_word > 0)
        return CP_OK;

    st = convert(cs, CODEC_GB18030, p, n, o);
    if (st != CP_OK)
        return st;
    if (o->replaced != m.replaced
        || utf8_has_private_use(o->buf->data + m.len, o->buf->len - m.len)) {
        out_rewind(o, m);
        return CP_OK;
    }
    *taken = true;
    return CP_OK;
}

/* --- ISO 2022 --------------------------------------------------------------- */

/* Bytes after ESC of the escape sequence at p, with its set; 0 if none matches. */
static size_t escape_match(const uint8_t *p, size_t n, int *set)
{
    for (int i = 0; i < SET_COUNT; i++) {
        size_t k = strlen(cs_sets[i].esc);

        if (k <= n && memcmp(p, cs_sets[i].esc, k) == 0) {
            *set = i;
            return k;
        }
    }
    return 0;
}

static bool is_double_g0(int set)
{
    return cs_sets[set].kind == KIND_JIS0208 || cs_sets[set].kind == KIND_JIS0212;
}

/* One character through cd; U+FFFD when cd lacks it. */
static cp_status convert_one(iconv_t cd, const uint8_t *in, size_t n, cs_out *o)
{
    char utf8[8], *ip = (char *)(uintptr_t)in, *op = utf8;
    size_t il = n, ol = sizeof utf8;

    if (cd == (iconv_t)-1)
        return out_replacement(o);
    iconv(cd, NULL, NULL, NULL, NULL);
    if (iconv(cd, &ip, &il, &op, &ol) == (size_t)-1 || il != 0)
        return out_replacement(o);
    return out_put(o, utf8, sizeof utf8 - ol);
}

/*
 * JIS X 0208 and 0212 in G0, two bytes a character, rewritten as EUC-JP
 * (0212 behind 0x8F), which glibc decodes. A pair outside the set becomes
 * one U+FFFD, so that no half of it is read as another character.
 */
static cp_status decode_jis(dcm_charset *cs, int set, const uint8_t *p, size_t n, cs_out *o)
{
    iconv_t cd;
    cp_status st = codec_get(cs, CODEC_EUC_JP, &cd);

    for (size_t i = 0; i < n && st == CP_OK; i += 2) {
        uint8_t euc[3];
        size_t k = 0;

        if (i + 1 == n)
            return out_replacement(o);
        if (cs_sets[set].kind == KIND_JIS0212)
            euc[k++] = 0x8F;
        euc[k++] = p[i] | 0x80;
        euc[k++] = p[i + 1] | 0x80;
        st = convert_one(cd, euc, k, o);
    }
    return st;
}

static cp_status decode_g1(dcm_charset *cs, int set, const uint8_t *p, size_t n, cs_out *o)
{
    cp_status st = CP_OK;

    if (set < 0) {
        for (size_t i = 0; i < n && st == CP_OK; i++)
            st = out_replacement(o);
        return st;
    }
    if (cs_sets[set].kind != KIND_KATAKANA)
        return convert(cs, cs_sets[set].codec, p, n, o);

    for (size_t i = 0; i < n && st == CP_OK; i++) {
        if (p[i] >= 0xA1 && p[i] <= 0xDF)
            st = out_codepoint(o, 0xFF61u + (uint32_t)(p[i] - 0xA1));
        else
            st = out_replacement(o);
    }
    return st;
}

static bool is_delimiter(uint8_t b, bool pn)
{
    return b == '\\' || (pn && (b == '^' || b == '='));
}

/* Printable ASCII up to and including the first delimiter. */
static size_t span_ascii(const uint8_t *p, size_t n, bool pn, bool *delim)
{
    size_t i = 0;

    *delim = false;
    while (i < n && p[i] >= 0x20 && p[i] < 0x7F) {
        if (is_delimiter(p[i++], pn)) {
            *delim = true;
            break;
        }
    }
    return i;
}

static size_t span_range(const uint8_t *p, size_t n, uint8_t lo, uint8_t hi)
{
    size_t i = 0;

    while (i < n && p[i] >= lo && p[i] <= hi)
        i++;
    return i;
}

/*
 * Walks a value under ISO 2022: escape sequences switch G0 and G1, and the
 * initial code state returns at each delimiter and control character
 * (PS3.5 6.1.2.5.3). Every escape sequence of PS3.3 C.12-3 and C.12-4 is
 * followed, declared or not: a missing term is a writer's slip, the bytes
 * still say what they are.
 */
static cp_status decode_2022(dcm_charset *cs, bool pn, const uint8_t *p, size_t n, cs_out *o)
{
    int g0 = cs->init_g0, g1 = cs->init_g1, set;
    size_t i = 0, run, k;
    bool delim;
    cp_status st = CP_OK;

    while (i < n && st == CP_OK) {
        uint8_t b = p[i];

        if (b == CS_ESC) {
            k = escape_match(p + i + 1, n - i - 1, &set);
            if (k == 0) {
                st = out_replacement(o);
                i++;
            } else {
                *(cs_sets[set].g == 0 ? &g0 : &g1) = set;
                i += 1 + k;
            }
        } else if (b < 0x20 || b == 0x7F) {
            st = out_put(o, &b, 1);
            g0 = cs->init_g0;
            g1 = cs->init_g1;
            i++;
        } else if (b >= 0x80) {
            run = span_range(p + i, n - i, 0x80, 0xFF);
            st = decode_g1(cs, g1 >= 0 ? g1 : cs->fallback_g1, p + i, run, o);
            i += run;
        } else if (is_double_g0(g0)) {
            run = b == 0x20 ? 1 : span_range(p + i, n - i, 0x21, 0x7E);
            st = b == 0x20 ? out_put(o, &b, 1) : decode_jis(cs, g0, p + i, run, o);
            i += run;
        } else {
            run = span_ascii(p + i, n - i, pn, &delim);
            st = out_put(o, p + i, run);
            if (delim) {
                g0 = cs->init_g0;
                g1 = cs->init_g1;
            }
            i += run;
        }
    }
    return st;
}

/* --- choosing the set ------------------------------------------------------- */

static unsigned guess_flag(const dcm_charset *cs)
{
    if (cs->origin == ORIGIN_ABSENT || cs->origin == ORIGIN_DEFAULT || cs->unknown)
        return DCM_CHARSET_GUESSED;
    return DCM_CHARSET_MISLABELLED;
}

/* The default repertoire with high bytes: none of its characters, so guess. */
static cp_status decode_default(dcm_charset *cs, const uint8_t *p, size_t n, cs_out *o,
                                unsigned *flags)
{
    bool taken;
    cp_status st;

    if (!cs->detect)
        return out_latin1(o, p, n);

    *flags |= guess_flag(cs);
    if (utf8_valid(p, n))
        return out_put(o, p, n);
    st = try_gb18030(cs, p, n, true, o, &taken);
    if (st != CP_OK || taken)
        return st;
    return out_latin1(o, p, n);
}

static cp_status decode_utf8_declared(dcm_charset *cs, const uint8_t *p, size_t n, cs_out *o,
                                      unsigned *flags)
{
    bool taken = false;
    cp_status st;

    if (utf8_valid(p, n))
        return out_put(o, p, n);
    if (cs->detect) {
        st = try_gb18030(cs, p, n, true, o, &taken);
        if (st != CP_OK)
            return st;
        if (taken) {
            *flags |= DCM_CHARSET_MISLABELLED;
            return CP_OK;
        }
    }
    return out_utf8(o, p, n);
}

/*
 * GBK and GB18030 as declared; when they do not decode cleanly, the other
 * Chinese set and then UTF-8 are tried before settling for U+FFFD.
 */
static cp_status decode_gb_declared(dcm_charset *cs, int codec, const uint8_t *p, size_t n,
                                    cs_out *o, unsigned *flags)
{
    cs_mark m = out_mark(o);
    cp_status st = convert(cs, codec, p, n, o);

    if (st != CP_OK || o->replaced == m.replaced || !cs->detect)
        return st;

    out_rewind(o, m);
    if (codec == CODEC_GBK) {
        st = convert(cs, CODEC_GB18030, p, n, o);
        if (st != CP_OK)
            return st;
        if (o->replaced == m.replaced) {
            *flags |= DCM_CHARSET_MISLABELLED;
            return CP_OK;
        }
        out_rewind(o, m);
    }
    if (utf8_valid(p, n)) {
        *flags |= DCM_CHARSET_MISLABELLED;
        return out_put(o, p, n);
    }
    return convert(cs, codec, p, n, o);
}

static cp_status decode_text(dcm_charset *cs, bool pn, const uint8_t *p, size_t n, cs_out *o,
                             unsigned *flags)
{
    const cs_term *t = cs->primary;
    bool has_esc = memchr(p, CS_ESC, n) != NULL, high = false, taken;
    const cs_set *g1;
    cp_status st;

    if (t != NULL && t->form == FORM_UTF8)
        return decode_utf8_declared(cs, p, n, o, flags);
    if (t != NULL && t->form == FORM_GB18030)
        return decode_gb_declared(cs, CODEC_GB18030, p, n, o, flags);
    if (t != NULL && t->form == FORM_GBK)
        return decode_gb_declared(cs, CODEC_GBK, p, n, o, flags);

    for (size_t i = 0; i < n && !high; i++)
        high = p[i] >= 0x80;
    if (!high && !has_esc)
        return out_put(o, p, n);
    if (has_esc || cs->fallback_g1 >= 0)
        return decode_2022(cs, pn, p, n, o);
    if (cs->init_g1 < 0)
        return decode_default(cs, p, n, o, flags);

    g1 = &cs_sets[cs->init_g1];
    if (cs->detect && g1->latin) {
        st = try_gb18030(cs, p, n, g1->latin1_symbols, o, &taken);
        if (st != CP_OK)
            return st;
        if (taken) {
            *flags |= DCM_CHARSET_MISLABELLED;
            return CP_OK;
        }
    }
    if (g1->kind == KIND_SB)
        return convert(cs, g1->codec, p, n, o);
    return decode_2022(cs, pn, p, n, o);
}

cp_status dcm_charset_decode(dcm_charset *cs, dcm_vr vr, const uint8_t *bytes, size_t len,
                             cp_buf *out, unsigned *flags)
{
    size_t start = out->len;
    unsigned found = 0;
    bool high = false;
    cs_out o;
    cp_status st;

    if (len > (SIZE_MAX - DCM_CHARSET_GROWTH_SLACK - start) / DCM_CHARSET_GROWTH_MAX)
        return CP_ERR_LIMIT;
    o.buf = out;
    o.max = start + len * DCM_CHARSET_GROWTH_MAX + DCM_CHARSET_GROWTH_SLACK;
    o.replaced = 0;
    st = cp_buf_append(out, "", 0);
    if (st != CP_OK || len == 0)
        return st;

    if (dcm_vr_uses_charset(vr)) {
        if (cs->origin == ORIGIN_OVERRIDE)
            found |= DCM_CHARSET_OVERRIDDEN;
        if (cs->unknown)
            found |= DCM_CHARSET_UNKNOWN_TERM;
        st = decode_text(cs, vr == DCM_VR_PN, bytes, len, &o, &found);
    } else {
        for (size_t i = 0; i < len && !high; i++)
            high = bytes[i] >= 0x80;
        st = high ? out_latin1(&o, bytes, len) : out_put(&o, bytes, len);
    }

    if (st != CP_OK) {
        out->len = start;
        if (out->data != NULL)
            out->data[start] = '\0';
        return st;
    }
    if (o.replaced > 0)
        found |= DCM_CHARSET_REPLACED;
    if (flags != NULL)
        *flags |= found;
    return CP_OK;
}

/* --- encoding --------------------------------------------------------------- */

static cp_status encode_iconv(const char *codec, const char *utf8, size_t len, cp_buf *out)
{
    iconv_t cd = iconv_open(codec, "UTF-8");
    char *ip = (char *)(uintptr_t)utf8, *op;
    size_t il = len, ol, room, r;
    cp_status st = CP_OK;

    if (cd == (iconv_t)-1)
        return errno == ENOMEM ? CP_ERR_NOMEM : CP_ERR_UNSUPPORTED;

    while (il > 0) {
        room = il < (SIZE_MAX - 8) / 4 ? il * 4 + 8 : SIZE_MAX;
        st = cp_buf_reserve(out, room);
        if (st != CP_OK)
            goto done;
        op = (char *)out->data + out->len;
        ol = room;
        r = iconv(cd, &ip, &il, &op, &ol);
        out->len += room - ol;
        out->data[out->len] = '\0';
        if (r != (size_t)-1)
            break;
        if (errno != E2BIG) {
            st = CP_ERR_CHARSET;
            goto done;
        }
    }

done:
    iconv_close(cd);
    return st;
}

static cp_status encode_katakana(const char *utf8, size_t len, cp_buf *out)
{
    const uint8_t *p = (const uint8_t *)utf8;
    size_t i = 0, k, skip;
    cp_status st = CP_OK;

    while (i < len && st == CP_OK) {
        uint32_t c;

        k = utf8_sequence(p + i, len - i, &skip);
        if (k == 1) {
            st = cp_buf_append_byte(out, p[i++]);
            continue;
        }
        if (k != 3)
            return CP_ERR_CHARSET;
        c = (uint32_t)(p[i] & 0x0F) << 12 | (uint32_t)(p[i + 1] & 0x3F) << 6
            | (p[i + 2] & 0x3F);
        if (c < 0xFF61 || c > 0xFF9F)
            return CP_ERR_CHARSET;
        st = cp_buf_append_byte(out, (uint8_t)(0xA1 + (c - 0xFF61)));
        i += 3;
    }
    return st;
}

/* One character of a two-byte set, designated first when it is not yet. */
static cp_status encode_2022_char(iconv_t cd, const cs_set *set, const uint8_t *c, size_t n,
                                  cp_buf *out, bool *active)
{
    uint8_t euc[8], *b = euc;
    char *ip = (char *)(uintptr_t)c, *op = (char *)euc;
    size_t il = n, ol = sizeof euc, got;
    cp_status st = CP_OK;

    iconv(cd, NULL, NULL, NULL, NULL);
    if (iconv(cd, &ip, &il, &op, &ol) == (size_t)-1)
        return CP_ERR_CHARSET;
    got = sizeof euc - ol;
    if (set->kind == KIND_JIS0212) {
        if (got != 3 || euc[0] != 0x8F)
            return CP_ERR_CHARSET;
        b++;
        got--;
    }
    if (got != 2 || b[0] < 0xA1 || b[0] == 0xFF || b[1] < 0xA1 || b[1] == 0xFF)
        return CP_ERR_CHARSET;

    if (!*active) {
        st = cp_buf_append_byte(out, CS_ESC);
        if (st == CP_OK)
            st = cp_buf_append_str(out, set->esc);
        *active = true;
    }
    if (st == CP_OK && set->g == 0) {
        b[0] &= 0x7F;
        b[1] &= 0x7F;
    }
    return st != CP_OK ? st : cp_buf_append(out, b, 2);
}

/*
 * ISO 2022 with one two-byte set (IR 87, 159, 149 or 58): ASCII as it is and
 * every other character from the set. The reader returns to the initial
 * state at delimiters and control characters (PS3.5 6.1.2.5.3), so the set is
 * designated again after each; a G0 set is left with ESC ( B before ASCII.
 */
static cp_status encode_2022(const cs_set *set, const char *utf8, size_t len, cp_buf *out)
{
    static const char to_ascii[] = "\033(B";
    const uint8_t *p = (const uint8_t *)utf8;
    iconv_t cd = iconv_open(codec_names[set->codec], "UTF-8");
    bool active = false;
    size_t i = 0, k, skip;
    cp_status st = CP_OK;

    if (cd == (iconv_t)-1)
        return errno == ENOMEM ? CP_ERR_NOMEM : CP_ERR_UNSUPPORTED;

    while (i < len && st == CP_OK) {
        k = utf8_sequence(p + i, len - i, &skip);
        if (k > 1) {
            st = encode_2022_char(cd, set, p + i, k, out, &active);
            i += k;
            continue;
        }
        if (active && set->g == 0)
            st = cp_buf_append_str(out, to_ascii);
        if (st == CP_OK)
            st = cp_buf_append_byte(out, p[i]);
        if (p[i] < 0x20 || p[i] == 0x7F || p[i] == '\\' || p[i] == '^' || p[i] == '='
            || set->g == 0)
            active = false;
        i++;
    }
    if (st == CP_OK && active && set->g == 0)
        st = cp_buf_append_str(out, to_ascii);

    iconv_close(cd);
    return st;
}

cp_status dcm_charset_encode(const char *term, const char *utf8, size_t len, cp_buf *out)
{
    const cs_term *t;
    const uint8_t *p = (const uint8_t *)utf8;
    size_t start = out->len, tl = term != NULL ? strlen(term) : 0;
    bool ascii = true;
    cp_status st;

    while (tl > 0 && is_padding((uint8_t)term[tl - 1]))
        tl--;
    t = term != NULL ? term_find(term, tl) : NULL;
    if (t == NULL)
        return CP_ERR_UNSUPPORTED;
    if (!utf8_valid(p, len))
        return CP_ERR_CHARSET;
    for (size_t i = 0; i < len && ascii; i++)
        ascii = p[i] < 0x80;

    if (ascii || t->form == FORM_UTF8)
        return cp_buf_append(out, utf8, len);
    if (t->form == FORM_GB18030)
        st = encode_iconv("GB18030", utf8, len, out);
    else if (t->form == FORM_GBK)
        st = encode_iconv("GBK", utf8, len, out);
    else if (cs_sets[t->set].kind == KIND_KATAKANA)
        st = encode_katakana(utf8, len, out);
    else if (cs_sets[t->set].kind == KIND_SB)
        st = encode_iconv(codec_names[cs_sets[t->set].codec], utf8, len, out);
    else if (cs_sets[t->set].kind == KIND_ASCII)
        st = CP_ERR_CHARSET;
    else
        st = encode_2022(&cs_sets[t->set], utf8, len, out);

    if (st != CP_OK) {
        out->len = start;
        if (out->data != NULL)
            out->data[start] = '\0';
    }
    return st;
}

/* --- person names ----------------------------------------------------------- */

void dcm_person_name_split(const char *utf8, size_t len, dcm_person_name *out)
{
    const char *group[3] = { "", "", "" };
    size_t glen[3] = { 0, 0, 0 };
    size_t start = 0, g = 0;

    if (utf8 == NULL)
        len = 0;
    for (size_t i = 0; i <= len && g < 3 && utf8 != NULL; i++) {
        size_t n;

        if (i < len && utf8[i] != '=')
            continue;
        n = i - start;
        while (n > 0 && utf8[start + n - 1] == ' ')
            n--;
        group[g] = utf8 + start;
        glen[g] = n;
        g++;
        start = i + 1;
    }

    out->alphabetic = group[0];
    out->alphabetic_len = glen[0];
    out->ideographic = group[1];
    out->ideographic_len = glen[1];
    out->phonetic = group[2];
    out->phonetic_len = glen[2];
}
