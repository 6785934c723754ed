/*
 * jpeg_lossless.c - our own decoder for JPEG lossless, ITU T.81 Annex H
 * (process 14, DICOM's 1.2.840.10008.1.2.4.57 and .70, the latter being
 * selection value 1 only): the SOF3 frame header, Huffman tables (DHT,
 * Annex C), restart intervals (DRI and RSTn), one scan of every component
 * interleaved or one scan per component, the seven predictors of table
 * H.1, the point transform, byte stuffing and fill bytes (B.1.1.5).
 *
 * Speed comes from a 64-bit bit buffer refilled eight bytes at a time when
 * no 0xFF is among them, and from an 11-bit lookup table whose entries give,
 * for short codes, the whole difference value (code and extra bits at
 * once). Predictions are computed per row with the predictor chosen
 * outside the loop. Reconstruction is modulo 2^16 (H.1.2.1).
 *
 * The bit reader never reads past the end or through a marker: it feeds
 * zeros instead, and counts them; a scan that consumed any of them was cut
 * short and fails the frame.
 */
#include <string.h>

#include "core/alloc.h"
#include "pixel/codec.h"

#define JL_FAST_BITS   11
#define JL_TABLES      4
#define JL_COMPONENTS  4

/* One lookup entry: the bits to consume and, when `full`, the difference itself. */
typedef struct jl_fast {
    int32_t value;      /* the difference (full) or SSSS (code only) */
    uint8_t bits;       /* 0: the code is longer than JL_FAST_BITS */
    uint8_t full;
} jl_fast;

typedef struct jl_huff {
    bool defined;
    jl_fast fast[1 << JL_FAST_BITS];
    int32_t maxcode[17];    /* largest code of each length, -1 when none */
    int32_t valoff[17];     /* huffval index = code + valoff[length] */
    uint8_t huffval[256];
} jl_huff;

typedef struct jl_bits {
    const uint8_t *p, *end;
    uint64_t acc;           /* next bits at the top */
    int n;                  /* valid bits in acc */
    uint32_t fake;          /* zero bits fed after a marker or the end */
    bool stopped;
} jl_bits;

typedef struct jl_component {
    uint8_t id;
    bool done;
} jl_component;

typedef struct jl_decoder {
    const uint8_t *data;
    size_t len;
    size_t pos;
    jl_huff tables[JL_TABLES];
    uint32_t restart;
    bool have_frame;
    unsigned precision;
    uint32_t rows, cols;
    unsigned ncomp;
    jl_component comp[JL_COMPONENTS];
    unsigned pt;
    uint16_t *samples;      /* rows x cols x ncomp, interleaved */
    cp_error *err;
} jl_decoder;

typedef struct jl_scan {
    unsigned ns;
    unsigned index[JL_COMPONENTS];  /* component positions in a pixel */
    const jl_huff *huff[JL_COMPONENTS];
    unsigned predictor;
    unsigned pt;
} jl_scan;

static cp_status jl_fail(jl_decoder *d, size_t at, const char *what)
{
    return cp_error_set(d->err, CP_ERR_MALFORMED, (int64_t)at, CP_ERROR_NO_TAG,
                        "JPEG lossless: %s", what);
}

/* --- Huffman tables (T.81 C and F.2.2.3) -------------------------------------------- */

static int32_t extend(uint32_t v, unsigned s)
{
    return v < (UINT32_C(1) << (s - 1)) ? (int32_t)v - (int32_t)((UINT32_C(1) << s) - 1)
                                        : (int32_t)v;
}

static bool huff_build(jl_huff *h, const uint8_t counts[16], const uint8_t *vals,
                       unsigned nvals)
{
    uint32_t code = 0;
    unsigned k = 0;

    memset(h, 0, sizeof *h);
    memcpy(h->huffval, vals, nvals);
    for (unsigned l = 1; l <= 16; l++) {
        unsigned c = counts[l - 1];

        h->valoff[l] = (int32_t)k - (int32_t)code;
        h->maxcode[l] = c ? (int32_t)(code + c - 1) : -1;
        for (unsigned i = 0; i < c; i++, k++, code++) {
            unsigned s = vals[k];

            /* Counts that overflow the code space make no prefix code. */
            if (code >= (UINT32_C(1) << l))
                return false;
            if (l > JL_FAST_BITS)
                continue;

            unsigned spare = JL_FAST_BITS - l;

            for (uint32_t fill = 0; fill < (UINT32_C(1) << spare); fill++) {
                jl_fast *e = &h->fast[code << spare | fill];

                e->bits = (uint8_t)l;
                e->value = (int32_t)s;
                if (s == 0 || s == 16) {
                    e->full = 1;
                    e->value = s == 0 ? 0 : 32768;
                } else if (s < 16 && l + s <= JL_FAST_BITS) {
                    e->full = 1;
                    e->bits = (uint8_t)(l + s);
                    e->value = extend(fill >> (spare - s), s);
                }
            }
        }
        code <<= 1;
    }
    h->defined = true;
    return true;
}

/* --- the bit reader ------------------------------------------------------------------ */

static inline bool no_ff_byte(uint64_t w)
{
    uint64_t x = ~w;

    return ((x - UINT64_C(0x0101010101010101)) & ~x & UINT64_C(0x8080808080808080)) == 0;
}

__attribute__((noinline)) static void bits_fill_slow(jl_bits *b)
{
    while (b->n <= 56) {
        uint64_t byte = 0;

        if (!b->stopped && b->p < b->end) {
            byte = *b->p;
            if (byte != 0xFF) {
                b->p++;
            } else if (b->p + 1 < b->end && b->p[1] == 0x00) {
                b->p += 2;
            } else {
                /* A marker (or fill bytes before one) ends the entropy-coded data. */
                b->stopped = true;
                byte = 0;
            }
        } else {
            b->stopped = true;
        }
        if (b->stopped)
            b->fake += 8;
        b->acc |= byte << (56 - b->n);
        b->n += 8;
    }
}

__attribute__((always_inline)) static inline void bits_fill(jl_bits *b)
{
    if (b->n > 56)
        return;
    if (!b->stopped && b->end - b->p >= 8) {
        const uint8_t *p = b->p;
        uint64_t w = (uint64_t)p[0] << 56 | (uint64_t)p[1] << 48 | (uint64_t)p[2] << 40 |
                     (uint64_t)p[3] << 32 | (uint64_t)p[4] << 24 | (uint64_t)p[5] << 16 |
                     (uint64_t)p[6] << 8 | (uint64_t)p[7];

        if (no_ff_byte(w)) {
            int take = (64 - b->n) >> 3;

            if (take == 8)
                b->acc = w;
            else
                b->acc |= (w >> (64 - 8 * take)) << (64 - b->n - 8 * take);
            b->n += 8 * take;
            b->p += take;
            return;
        }
    }
    bits_fill_slow(b);
}

static inline void bits_skip(jl_bits *b, unsigned count)
{
    b->acc <<= count;
    b->n -= (int)count;
}

/* Whether decoding used bits that were not in the codestream. */
static bool bits_overrun(const jl_bits *b)
{
    return b->fake > (uint32_t)b->n;
}

/* Decodes one difference value; false on a code that is in no table. */
__attribute__((always_inline)) static inline bool decode_diff(jl_bits *b, const jl_huff *h,
                                                         int32_t *diff)
{
    const jl_fast *e;
    unsigned s;

    if (b->n < 32)
        bits_fill(b);
    e = &h->fast[b->acc >> (64 - JL_FAST_BITS)];
    if (e->full) {
        bits_skip(b, e->bits);
        *diff = e->value;
        return true;
    }
    if (e->bits != 0) {
        s = (unsigned)e->value;
        bits_skip(b, e->bits);
    } else {
        uint32_t top = (uint32_t)(b->acc >> 48);
        unsigned l;

        for (l = JL_FAST_BITS + 1; l <= 16; l++) {
            int32_t code = (int32_t)(top >> (16 - l));

            if (code <= h->maxcode[l])
                break;
        }
        if (l > 16)
            return false;

        int32_t at = (int32_t)(top >> (16 - l)) + h->valoff[l];

        if (at < 0 || at > 255)
            return false;
        s = h->huffval[at];
        bits_skip(b, l);
    }

    if (s == 0) {
        *diff = 0;
    } else if (s == 16) {
        *diff = 32768;
    } else if (s > 16) {
        return false;
    } else {
        uint32_t v = (uint32_t)(b->acc >> (64 - s));

        bits_skip(b, s);
        *diff = extend(v, s);
    }
    return true;
}

/* --- scans ------------------------------------------------------------------------- */

/*
 * Decodes columns [x0, x1) of one row for every component of the scan.
 * `reset` makes the first MCU use the default prediction (start of the scan
 * or of a restart interval); `line1` selects Ra for the rest, as on the
 * first line of an interval; otherwise column 0 uses Rb and the others the
 * scan's predictor (table H.1).
 */
static bool decode_span(jl_decoder *d, const jl_scan *s, jl_bits *b, uint32_t y, uint32_t x0,
                        uint32_t x1, bool reset, bool line1)
{
    size_t stride = d->ncomp;
    size_t rowlen = (size_t)d->cols * stride;
    uint16_t *row = d->samples + (size_t)y * rowlen;
    int32_t init = (int32_t)1 << (d->precision - s->pt - 1);
    uint32_t x = x0;
    int32_t diff;

    if (x < x1 && (reset || (!line1 && x == 0))) {
        for (unsigned i = 0; i < s->ns; i++) {
            uint16_t *px = row + (size_t)x * stride + s->index[i];
            int32_t pred = reset ? init : px[-(ptrdiff_t)rowlen];

            if (!decode_diff(b, s->huff[i], &diff))
                return false;
            *px = (uint16_t)(pred + diff);
        }
        x++;
    }
    if (x >= x1)
        return true;

    unsigned predictor = line1 ? 1 : s->predictor;

#define RA (px[-(ptrdiff_t)stride])
#define RB (px[-(ptrdiff_t)rowlen])
#define RC (px[-(ptrdiff_t)rowlen - (ptrdiff_t)stride])
#define SPAN(PRED)                                                            \
    do {                                                                      \
        if (s->ns == 1) {                                                     \
            const jl_huff *h = s->huff[0];                                    \
            uint16_t *px = row + (size_t)x * stride + s->index[0];            \
            for (; x < x1; x++, px += stride) {                               \
                if (!decode_diff(b, h, &diff))                                \
                    return false;                                             \
                *px = (uint16_t)((int32_t)(PRED) + diff);                     \
            }                                                                 \
        } else {                                                              \
            for (; x < x1; x++) {                                             \
                for (unsigned i = 0; i < s->ns; i++) {                        \
                    uint16_t *px = row + (size_t)x * stride + s->index[i];    \
                    if (!decode_diff(b, s->huff[i], &diff))                   \
                        return false;                                         \
                    *px = (uint16_t)((int32_t)(PRED) + diff);                 \
                }                                                             \
            }                                                                 \
        }                                                                     \
    } while (0)

    switch (predictor) {
    case 1: SPAN(RA); break;
    case 2: SPAN(RB); break;
    case 3: SPAN(RC); break;
    case 4: SPAN((int32_t)RA + RB - RC); break;
    case 5: SPAN((int32_t)RA + (((int32_t)RB - RC) >> 1)); break;
    case 6: SPAN((int32_t)RB + (((int32_t)RA - RC) >> 1)); break;
    default: SPAN(((int32_t)RA + RB) >> 1); break;
    }
#undef SPAN
#undef RA
#undef RB
#undef RC
    return true;
}

/* Finds the RSTn marker that ends an interval; resynchronises on the next one if lost. */
static void restart(jl_bits *b, bool *overrun)
{
    if (bits_overrun(b))
        *overrun = true;
    b->acc = 0;
    b->n = 0;
    b->fake = 0;
    b->stopped = false;

    const uint8_t *p = b->p;

    while (p + 1 < b->end) {
        if (p[0] == 0xFF && p[1] >= 0xD0 && p[1] <= 0xD7) {
            b->p = p + 2;
            return;
        }
        if (p[0] == 0xFF && p[1] != 0x00 && p[1] != 0xFF && !(p[1] >= 0xD0 && p[1] <= 0xD7)) {
            /* Another marker: the interval's data is missing. */
            b->p = p;
            *overrun = true;
            return;
        }
        p++;
    }
    b->p = b->end;
    *overrun = true;
}

static cp_status decode_scan(jl_decoder *d, const jl_scan *s)
{
    jl_bits b = { d->data + d->pos, d->data + d->len, 0, 0, 0, false };
    uint32_t left = d->restart ? d->restart : UINT32_MAX;
    bool reset = true, line1 = true, overrun = false;

    for (uint32_t y = 0; y < d->rows; y++) {
        uint32_t x = 0;

        line1 = reset;
        while (x < d->cols) {
            uint32_t span = d->cols - x < left ? d->cols - x : left;

            if (!decode_span(d, s, &b, y, x, x + span, reset, line1))
                return jl_fail(d, (size_t)(b.p - d->data), "invalid Huffman code");
            reset = false;
            x += span;
            if (left != UINT32_MAX)
                left -= span;
            if (left == 0 && !(y + 1 == d->rows && x == d->cols)) {
                restart(&b, &overrun);
                left = d->restart;
                reset = true;
                line1 = true;
            }
        }
    }
    if (overrun || bits_overrun(&b))
        return jl_fail(d, (size_t)(b.p - d->data), "the codestream ends before the image");

    /* The next marker is at or after where the reader stopped. */
    d->pos = (size_t)(b.p - d->data);
    for (unsigned i = 0; i < s->ns; i++)
        d->comp[s->index[i]].done = true;
    return CP_OK;
}

/* --- marker segments (T.81 B.2) --------------------------------------------------- */

static cp_status segment(jl_decoder *d, const uint8_t **body, size_t *len)
{
    size_t n;

    if (d->len - d->pos < 2)
        return jl_fail(d, d->pos, "marker segment cut short");
    n = (size_t)d->data[d->pos] << 8 | d->data[d->pos + 1];
    if (n < 2 || n > d->len - d->pos)
        return jl_fail(d, d->pos, "marker segment length beyond the data");
    *body = d->data + d->pos + 2;
    *len = n - 2;
    d->pos += n;
    return CP_OK;
}

static cp_status parse_dht(jl_decoder *d, const uint8_t *p, size_t len)
{
    while (len > 0) {
        unsigned tc = p[0] >> 4, th = p[0] & 15, total = 0;

        if (len < 17 || th >= JL_TABLES || tc > 1)
            return jl_fail(d, d->pos, "bad DHT segment");
        for (unsigned i = 0; i < 16; i++)
            total += p[1 + i];
        if (total > 256 || len < 17 + (size_t)total)
            return jl_fail(d, d->pos, "DHT table longer than its segment");
        /* Lossless scans use the DC tables only (H.2.1). */
        if (tc == 0 && !huff_build(&d->tables[th], p + 1, p + 17, total))
            return jl_fail(d, d->pos, "invalid Huffman table");
        p += 17 + total;
        len -= 17 + total;
    }
    return CP_OK;
}

static cp_status parse_sof3(jl_decoder *d, const px_image *img, const uint8_t *p, size_t len)
{
    if (d->have_frame)
        return jl_fail(d, d->pos, "a second frame header");
    if (len < 6 || len < 6 + 3 * (size_t)p[5])
        return jl_fail(d, d->pos, "SOF3 segment too short");
    d->precision = p[0];
    d->rows = (uint32_t)p[1] << 8 | p[2];
    d->cols = (uint32_t)p[3] << 8 | p[4];
    d->ncomp = p[5];
    if (d->precision < 2 || d->precision > 16)
        return jl_fail(d, d->pos, "sample precision outside 2-16");
    if (d->rows != img->rows || d->cols != img->columns || d->ncomp != img->samples_per_pixel)
        return cp_error_set(d->err, CP_ERR_MALFORMED, (int64_t)d->pos, CP_ERROR_NO_TAG,
                            "JPEG lossless frame is %u x %u x %u, the image %u x %u x %u",
                            d->cols, d->rows, d->ncomp, img->columns, img->rows,
                            img->samples_per_pixel);
    if (d->ncomp == 0 || d->ncomp > JL_COMPONENTS)
        return jl_fail(d, d->pos, "bad number of components");
    for (unsigned i = 0; i < d->ncomp; i++) {
        d->comp[i].id = p[6 + 3 * i];
        if (p[7 + 3 * i] != 0x11)
            return cp_error_set(d->err, CP_ERR_UNSUPPORTED, (int64_t)d->pos, CP_ERROR_NO_TAG,
                                "JPEG lossless with subsampled components");
    }
    d->have_frame = true;
    return CP_OK;
}

static cp_status parse_sos(jl_decoder *d, const uint8_t *p, size_t len, jl_scan *s)
{
    if (!d->have_frame)
        return jl_fail(d, d->pos, "a scan before the frame header");
    if (len < 1 || p[0] == 0 || p[0] > d->ncomp || len < 4 + 2 * (size_t)p[0])
        return jl_fail(d, d->pos, "bad SOS segment");
    s->ns = p[0];
    for (unsigned i = 0; i < s->ns; i++) {
        unsigned id = p[1 + 2 * i], td = p[2 + 2 * i] >> 4;
        unsigned c;

        for (c = 0; c < d->ncomp && d->comp[c].id != id; c++)
            ;
        if (c == d->ncomp || td >= JL_TABLES || !d->tables[td].defined)
            return jl_fail(d, d->pos, "scan component or table not defined");
        for (unsigned j = 0; j < i; j++) {
            if (s->index[j] == c)
                return jl_fail(d, d->pos, "a component twice in a scan");
        }
        s->index[i] = c;
        s->huff[i] = &d->tables[td];
    }

    const uint8_t *t = p + 1 + 2 * s->ns;

    s->predictor = t[0];
    s->pt = t[2] & 15;
    if (s->predictor < 1 || s->predictor > 7)
        return jl_fail(d, d->pos, "predictor outside 1-7");
    if (s->pt >= d->precision)
        return jl_fail(d, d->pos, "point transform not below the precision");
    return CP_OK;
}

/* Moves to the byte after the next marker and returns the marker code, or -1 at the end. */
static int next_marker(jl_decoder *d)
{
    while (d->pos + 1 < d->len) {
        if (d->data[d->pos] == 0xFF && d->data[d->pos + 1] != 0xFF &&
            d->data[d->pos + 1] != 0x00) {
            int m = d->data[d->pos + 1];

            d->pos += 2;
            return m;
        }
        d->pos++;
    }
    d->pos = d->len;
    return -1;
}

static cp_status parse_stream(jl_decoder *d, const px_image *img, px_frame *frame)
{
    const uint8_t *body = NULL;
    size_t len = 0;
    jl_scan scan;
    cp_status st;

    memset(&scan, 0, sizeof scan);
    int m;

    if (d->len < 2 || d->data[0] != 0xFF || d->data[1] != 0xD8)
        return jl_fail(d, 0, "no SOI marker");
    d->pos = 2;

    while ((m = next_marker(d)) >= 0 && m != 0xD9) {
        if (m == 0x01 || (m >= 0xD0 && m <= 0xD8))
            continue;
        st = segment(d, &body, &len);
        if (st != CP_OK)
            return st;
        if (m == 0xC3) {
            st = parse_sof3(d, img, body, len);
            if (st == CP_OK && d->samples == NULL) {
                if (img->bits_allocated < d->precision || img->bits_allocated > 16)
                    return cp_error_set(d->err, CP_ERR_MALFORMED, (int64_t)d->pos,
                                        CP_ERROR_NO_TAG,
                                        "JPEG lossless of %u bits in %u-bit samples",
                                        d->precision, img->bits_allocated);
                st = px_frame_alloc(frame, d->rows, d->cols, (uint16_t)d->ncomp,
                                    img->bits_allocated > 8 ? px_image_sample_type(img)
                                                            : PX_U16,
                                    d->err);
                d->samples = (uint16_t *)(void *)frame->data;
            }
        } else if ((m >= 0xC0 && m <= 0xCF) && m != 0xC4 && m != 0xC8 && m != 0xCC) {
            return cp_error_set(d->err, CP_ERR_UNSUPPORTED, (int64_t)d->pos, CP_ERROR_NO_TAG,
                                "JPEG process of SOF%d is not lossless process 14", m - 0xC0);
        } else if (m == 0xC4) {
            st = parse_dht(d, body, len);
        } else if (m == 0xDD) {
            st = len >= 2 ? CP_OK : jl_fail(d, d->pos, "DRI segment too short");
            if (st == CP_OK)
                d->restart = (uint32_t)body[0] << 8 | body[1];
        } else if (m == 0xDA) {
            st = parse_sos(d, body, len, &scan);
            if (st == CP_OK && d->samples == NULL)
                st = jl_fail(d, d->pos, "a scan before the frame header");
            if (st == CP_OK) {
                d->pt = scan.pt;
                st = decode_scan(d, &scan);
            }
        }
        if (st != CP_OK)
            return st;
    }

    if (d->samples == NULL)
        return jl_fail(d, d->pos, "no frame header");
    for (unsigned i = 0; i < d->ncomp; i++) {
        if (!d->comp[i].done)
            return jl_fail(d, d->pos, "a component has no scan");
    }
    return CP_OK;
}

/* Point transform undone, then narrowed to 8 bits when the image's samples are bytes. */
static void finish(jl_decoder *d, const px_image *img, px_frame *frame)
{
    size_t n = (size_t)d->rows * d->cols * d->ncomp;
    uint16_t *v = d->samples;

    if (d->pt > 0) {
        for (size_t i = 0; i < n; i++)
            v[i] = (uint16_t)(v[i] << d->pt);
    }
    if (img->bits_allocated <= 8) {
        for (size_t i = 0; i < n; i++)
            frame->data[i] = (uint8_t)v[i];
        frame->type = px_image_sample_type(img);
        frame->size = n;
    }
    frame->photometric = img->photometric;
    px_frame_fix_bits(frame, img->bits_stored);
}

cp_status px_jpeg_lossless_decode(const px_image *img, const uint8_t *bytes, size_t len,
                                  px_frame *frame, cp_error *err)
{
    jl_decoder *d;
    cp_status st;

    memset(frame, 0, sizeof *frame);
    if (img->float_pixels || img->bits_allocated > 16)
        return cp_error_set(err, CP_ERR_UNSUPPORTED, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "JPEG lossless with %u-bit samples", img->bits_allocated);
    d = cp_calloc(1, sizeof *d);
    if (d == NULL)
        return cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "no memory for the JPEG decoder");
    d->data = bytes;
    d->len = len;
    d->err = err;

    st = parse_stream(d, img, frame);
    if (st == CP_OK)
        finish(d, img, frame);
    else
        px_frame_clear(frame);
    cp_free(d);
    return st;
}
