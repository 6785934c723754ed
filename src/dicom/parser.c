/*
 * parser.c - the pull parser of DICOM data sets: element headers, sequences,
 * items and encapsulated pixel data (PS3.5 sections 7.1, 7.5, 8.2 and A.4).
 *
 * Element headers come in four forms (PS3.5 7.1.2, 7.1.3):
 *
 *   implicit VR:        tag(4) length(4)
 *   explicit VR, short: tag(4) VR(2) length(2)
 *   explicit VR, long:  tag(4) VR(2) 00 00 length(4)   OB OD OF OL OV OW SQ
 *                                                      SV UC UN UR UT UV
 *   items, delimiters:  tag(4) length(4)               (FFFE,E000/E00D/E0DD)
 *
 * The parser keeps a stack of open containers: data sets (the top level and
 * each item), sequences and encapsulated pixel data. A container with a
 * defined length ends at a known offset; one with an undefined length ends at
 * its delimiter. Values are never kept here: the caller reads or skips them.
 */
#include "dicom/parser.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/limits.h"
#include "dicom/dataset.h"
#include "dicom/dict.h"
#include "dicom/tag.h"

/* A sequence and its item open per level of depth, plus the top level. */
#define PARSER_FRAMES_MAX (2 * DCM_SEQUENCE_DEPTH_MAX + 2)
/*
 * Frames kept in the parser itself: a header rarely nests sequences more
 * than three deep, and a parser this small (under 1 KiB) comes from the
 * allocator's per-thread cache, where one with all PARSER_FRAMES_MAX frames
 * (5 KiB) took the slower path, twice for every file. Deeper nesting moves
 * the frames to an array of PARSER_FRAMES_MAX.
 */
#define PARSER_FRAMES_INLINE 8

/* Longest Private Creator value (LO, PS3.5 6.2). */
#define PARSER_CREATOR_MAX 64

#define NO_END UINT64_MAX

enum { FRAME_DATASET, FRAME_SEQUENCE, FRAME_FRAGMENTS };

typedef struct {
    uint8_t kind;
    bool explicit_vr;       /* syntax of what the container holds */
    bool big_endian;
    bool defined;           /* ends at `end` rather than at a delimiter */
    uint32_t tag;
    uint64_t header_offset;
    uint64_t end;           /* when defined */
    uint32_t count;         /* items or fragments so far */
    int32_t pixel_rep;      /* data sets: Pixel Representation, or -1 */
    int32_t lut_first;      /* data sets: first value of LUT Descriptor, or -1 */
    uint32_t creators;      /* data sets: index of their first Private Creator */
} parser_frame;

typedef struct {
    uint16_t group;
    uint8_t block;
    uint8_t len;
    char text[PARSER_CREATOR_MAX];
} parser_creator;

struct dcm_parser {
    dcm_source *src;
    dcm_parser_options opts;
    uint64_t size;          /* input size, or NO_END when unknown */
    bool size_pending;      /* size not asked for yet (parser_size) */
    uint32_t nframes;
    uint32_t depth;         /* sequences and encapsulated pixel data open */
    uint64_t elements;
    uint32_t trail_pos;     /* top-level elements matched against vr_trail */
    uint32_t flags;

    /* The value after the last ELEMENT or FRAGMENT event. */
    uint64_t value_left;
    uint64_t value_header;
    uint64_t value_offset;
    uint32_t value_tag;
    uint32_t value_length;

    bool first;             /* the first top-level element is yet to come */
    bool done;
    bool stopped;
    uint32_t stop_tag;
    cp_status failed;
    cp_error error;

    parser_creator *creators;
    uint32_t ncreators;
    uint32_t creators_cap;

    parser_frame *frames;   /* frames_inline, or PARSER_FRAMES_MAX of them on the heap */
    parser_frame frames_inline[PARSER_FRAMES_INLINE];
};

static uint16_t rd16(const uint8_t *b, bool be)
{
    return be ? (uint16_t)(b[0] << 8 | b[1]) : (uint16_t)(b[1] << 8 | b[0]);
}

static uint32_t rd32(const uint8_t *b, bool be)
{
    if (be)
        return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
    return (uint32_t)b[3] << 24 | (uint32_t)b[2] << 16 | (uint32_t)b[1] << 8 | b[0];
}

static uint32_t rdtag(const uint8_t *b, bool be)
{
    return (uint32_t)rd16(b, be) << 16 | rd16(b + 2, be);
}

/* Records the first failure; every later call reports it again. */
static cp_status parser_fail(dcm_parser *p, cp_error *err, cp_status status, uint64_t offset,
                             uint32_t tag, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

static cp_status parser_fail(dcm_parser *p, cp_error *err, cp_status status, uint64_t offset,
                             uint32_t tag, const char *fmt, ...)
{
    va_list ap;

    if (p->failed == CP_OK) {
        p->failed = status;
        p->error.status = status;
        p->error.offset = (int64_t)offset;
        p->error.tag = tag;
        va_start(ap, fmt);
        vsnprintf(p->error.detail, sizeof p->error.detail, fmt, ap);
        va_end(ap);
    }
    if (err != NULL && err->status == CP_OK)
        *err = p->error;
    return p->failed;
}

static cp_status parser_replay(dcm_parser *p, cp_error *err)
{
    if (err != NULL && err->status == CP_OK)
        *err = p->error;
    return p->failed;
}

/* A failure of the source itself (I/O, inflate, limit), not of the data. */
static cp_status parser_source_failed(dcm_parser *p, cp_error *err, cp_status st,
                                      uint64_t offset, uint32_t tag)
{
    if (st == CP_ERR_TRUNCATED)
        return parser_fail(p, err, st, offset, tag, "the input ends inside the element");
    if (st == CP_ERR_LIMIT)
        return parser_fail(p, err, st, offset, tag,
                           "the inflated data set exceeds %llu bytes",
                           (unsigned long long)DCM_INFLATE_MAX);
    return parser_fail(p, err, st, offset, tag, "reading the input failed");
}

cp_status dcm_parser_create(dcm_source *src, const dcm_parser_options *opts,
                            dcm_parser **out)
{
    dcm_parser *p;
    parser_frame *root;

    *out = NULL;
    p = cp_malloc(sizeof *p);
    if (p == NULL)
        return CP_ERR_NOMEM;
    memset(p, 0, offsetof(dcm_parser, frames_inline));
    p->frames = p->frames_inline;
    p->src = src;
    p->opts = *opts;
    p->size = NO_END;
    p->size_pending = true;
    p->first = true;
    cp_error_clear(&p->error);

    root = &p->frames[0];
    memset(root, 0, sizeof *root);
    root->kind = FRAME_DATASET;
    root->explicit_vr = opts->explicit_vr;
    root->big_endian = opts->big_endian;
    root->end = NO_END;
    root->pixel_rep = -1;
    root->lut_first = -1;
    p->nframes = 1;
    *out = p;
    return CP_OK;
}

void dcm_parser_destroy(dcm_parser *p)
{
    if (p == NULL)
        return;
    if (p->frames != p->frames_inline)
        cp_free(p->frames);
    cp_free(p->creators);
    cp_free(p);
}

uint32_t dcm_parser_flags(const dcm_parser *p)
{
    return p->flags;
}

bool dcm_parser_explicit_vr(const dcm_parser *p)
{
    return p->frames[0].explicit_vr;
}

uint64_t dcm_parser_value_left(const dcm_parser *p)
{
    return p->value_left;
}

void dcm_parser_guess_syntax(const uint8_t *bytes, size_t len, bool *explicit_vr,
                             bool *big_endian)
{
    uint16_t le, be;

    *explicit_vr = len >= 6 && dcm_vr_from_bytes(bytes[4], bytes[5]) != DCM_VR_NONE;
    *big_endian = false;
    if (!*explicit_vr || len < 2)
        return;

    /* Data sets start with low groups (0008 mostly): the byte order that reads one wins. */
    le = rd16(bytes, false);
    be = rd16(bytes, true);
    *big_endian = be < le && be <= 0x00FF;
}

/*
 * The input size, asked for only when needed (the first element's syntax
 * check): a file source learns it with a system call.
 */
static uint64_t parser_size(dcm_parser *p)
{
    uint64_t size;

    if (p->size_pending) {
        p->size_pending = false;
        p->size = dcm_source_size(p->src, &size) ? size : NO_END;
    }
    return p->size;
}

/* --- value reading ------------------------------------------------------------ */

static cp_status parser_value_truncated(dcm_parser *p, cp_error *err, uint64_t left)
{
    return parser_fail(p, err, CP_ERR_TRUNCATED, p->value_header, p->value_tag,
                       "value length %u exceeds the %llu bytes left", p->value_length,
                       (unsigned long long)left);
}

cp_status dcm_parser_read_value(dcm_parser *p, void *buf, size_t len, size_t *got,
                                cp_error *err)
{
    cp_status st;

    *got = 0;
    if (len > p->value_left)
        len = (size_t)p->value_left;
    if (len == 0)
        return CP_OK;

    st = dcm_source_read(p->src, buf, len, got);
    p->value_left -= *got;
    if (st != CP_OK)
        return parser_source_failed(p, err, st, p->value_header, p->value_tag);
    if (*got < len) {
        p->value_left = 0;
        return parser_value_truncated(p, err,
                                      dcm_source_offset(p->src) - p->value_offset);
    }
    return CP_OK;
}

cp_status dcm_parser_take_value(dcm_parser *p, const uint8_t **ptr, cp_error *err)
{
    cp_status st;

    *ptr = NULL;
    if (p->value_left != p->value_length)
        return CP_ERR_UNSUPPORTED;
    st = dcm_source_take(p->src, (size_t)p->value_left, ptr);
    if (st == CP_ERR_UNSUPPORTED)
        return st;
    if (st != CP_OK)
        return parser_source_failed(p, err, st, p->value_header, p->value_tag);
    p->value_left = 0;
    return CP_OK;
}

cp_status dcm_parser_skip_value(dcm_parser *p, cp_error *err)
{
    uint64_t n = p->value_left;
    cp_status st;

    if (n == 0)
        return CP_OK;
    p->value_left = 0;
    st = dcm_source_skip(p->src, n);
    if (st == CP_ERR_TRUNCATED)
        return parser_fail(p, err, st, p->value_header, p->value_tag,
                           "value length %u runs past the end of the input",
                           p->value_length);
    if (st != CP_OK)
        return parser_source_failed(p, err, st, p->value_header, p->value_tag);
    return CP_OK;
}

/* --- VR resolution (implicit VR and UN) ---------------------------------------- */

static parser_frame *parser_top(dcm_parser *p)
{
    return &p->frames[p->nframes - 1];
}

static const parser_creator *parser_find_creator(const dcm_parser *p, const parser_frame *f,
                                                 uint16_t group, uint8_t block)
{
    for (uint32_t i = f->creators; i < p->ncreators; i++) {
        if (p->creators[i].group == group && p->creators[i].block == block)
            return &p->creators[i];
    }
    return NULL;
}

/* Pixel Representation applies from the data set that has it down to its items. */
static int32_t parser_pixel_rep(const dcm_parser *p)
{
    for (uint32_t i = p->nframes; i-- > 0;) {
        if (p->frames[i].kind == FRAME_DATASET && p->frames[i].pixel_rep >= 0)
            return p->frames[i].pixel_rep;
    }
    return -1;
}

static bool vr_pair(dcm_vr vr, dcm_vr vr_alt, dcm_vr a, dcm_vr b)
{
    return (vr == a && vr_alt == b) || (vr == b && vr_alt == a);
}

/*
 * Picks one VR for the entries that list two (PS3.5 A.1, PS3.3 C.7.6.3,
 * C.11.1): US or SS by Pixel Representation; OB or OW is OW in implicit VR
 * except encapsulated pixel data; US or OW (LUT Data) is US only for a
 * single-entry LUT.
 */
static dcm_vr parser_pick_vr(const dcm_parser *p, const parser_frame *f, dcm_vr vr,
                             dcm_vr vr_alt, uint32_t tag, uint32_t len)
{
    if (vr_alt == DCM_VR_NONE)
        return vr;
    if (vr_pair(vr, vr_alt, DCM_VR_US, DCM_VR_SS))
        return parser_pixel_rep(p) == 1 ? DCM_VR_SS : DCM_VR_US;
    if (vr_pair(vr, vr_alt, DCM_VR_OB, DCM_VR_OW))
        return tag == DCM_TAG_PIXEL_DATA && len == DCM_UNDEFINED_LENGTH ? DCM_VR_OB
                                                                       : DCM_VR_OW;
    if (vr_pair(vr, vr_alt, DCM_VR_US, DCM_VR_OW))
        return f->lut_first == 1 ? DCM_VR_US : DCM_VR_OW;
    return vr;
}

/*
 * Implicit VR asks for the VR of every element, and a run of files from one
 * modality asks for the same few hundred public tags: a cache per thread
 * keeps the dictionary's two VRs of each in 8 bytes, so that a hit touches
 * neither dict.c's cache nor the entry, a line of a 200 KB table (together
 * 5% of reading a CT header, mostly cache misses). An unknown tag is kept
 * too, as DCM_VR_NONE. Two slots per hash, the last used first: with one,
 * the tags of a header that share a slot (a few dozen of 300) pushed each
 * other out in every file.
 */
#define VR_CACHE_SLOTS 1024u
#define VR_CACHE_SHIFT 23       /* 32 - log2(VR_CACHE_SLOTS / 2) */

typedef struct {
    uint32_t tag;
    uint8_t vr;
    uint8_t vr_alt;
    bool filled;
} vr_cache_slot;

static _Thread_local vr_cache_slot vr_cache[VR_CACHE_SLOTS];

static void parser_public_vr(uint32_t tag, dcm_vr *vr, dcm_vr *vr_alt)
{
    /* Fibonacci hashing: the top bits of the product mix group and element. */
    vr_cache_slot *set = &vr_cache[((uint32_t)(tag * 0x9E3779B1u) >> VR_CACHE_SHIFT) * 2];
    vr_cache_slot found;

    if (set[0].filled && set[0].tag == tag) {
        found = set[0];
    } else if (set[1].filled && set[1].tag == tag) {
        found = set[1];
        set[1] = set[0];
        set[0] = found;
    } else {
        const dcm_dict_entry *e = dcm_dict_lookup(tag);

        found.tag = tag;
        found.vr = (uint8_t)(e == NULL ? DCM_VR_NONE : e->vr);
        found.vr_alt = (uint8_t)(e == NULL ? DCM_VR_NONE : e->vr_alt);
        found.filled = true;
        set[1] = set[0];
        set[0] = found;
    }
    *vr = (dcm_vr)found.vr;
    *vr_alt = (dcm_vr)found.vr_alt;
}

/*
 * The files of a series carry the same elements in the same order, so the
 * VRs of the top level last read are kept in stream order too (a trail),
 * and the next file's elements are matched against it in step: a run of
 * consecutive bytes instead of a cache slot apiece. An element the trail
 * does not have at the cursor is looked for a few entries on (an element
 * this file lacks), or else takes the cursor's place, so that the trail
 * follows a new kind of file within a file or two.
 */
#define VR_TRAIL_MAX 512u
#define VR_TRAIL_LOOKAHEAD 4u

static _Thread_local vr_cache_slot vr_trail[VR_TRAIL_MAX];
static _Thread_local uint32_t vr_trail_len;

static void parser_trail_vr(dcm_parser *p, uint32_t tag, dcm_vr *vr, dcm_vr *vr_alt)
{
    uint32_t pos = p->trail_pos;
    uint32_t end = vr_trail_len - pos > VR_TRAIL_LOOKAHEAD ? pos + VR_TRAIL_LOOKAHEAD
                                                            : vr_trail_len;
    vr_cache_slot *slot;

    for (uint32_t i = pos; i < end; i++) {
        if (vr_trail[i].tag == tag && vr_trail[i].filled) {
            p->trail_pos = i + 1;
            *vr = (dcm_vr)vr_trail[i].vr;
            *vr_alt = (dcm_vr)vr_trail[i].vr_alt;
            return;
        }
    }

    parser_public_vr(tag, vr, vr_alt);
    if (pos >= VR_TRAIL_MAX)
        return;
    slot = &vr_trail[pos];
    slot->tag = tag;
    slot->vr = (uint8_t)*vr;
    slot->vr_alt = (uint8_t)*vr_alt;
    slot->filled = true;
    p->trail_pos = pos + 1;
    if (vr_trail_len < pos + 1)
        vr_trail_len = pos + 1;
}

/* The dictionary's VR for tag in data set f; DCM_VR_NONE when nobody knows it. */
static dcm_vr parser_dict_vr(dcm_parser *p, const parser_frame *f, uint32_t tag,
                             uint32_t len)
{
    uint16_t element = DCM_TAG_ELEMENT(tag);
    const dcm_dict_entry *e;
    const parser_creator *c;
    dcm_vr vr, vr_alt;

    if (!dcm_tag_is_private(tag)) {
        if (p->nframes == 1)
            parser_trail_vr(p, tag, &vr, &vr_alt);
        else
            parser_public_vr(tag, &vr, &vr_alt);
        return parser_pick_vr(p, f, vr, vr_alt, tag, len);
    }

    if (element == 0)
        return DCM_VR_UL;
    if (element >= 0x0010 && element <= 0x00FF)
        return DCM_VR_LO;
    if (element < 0x1000)
        return DCM_VR_NONE;
    c = parser_find_creator(p, f, DCM_TAG_GROUP(tag), (uint8_t)(element >> 8));
    if (c == NULL)
        return DCM_VR_NONE;
    e = dcm_dict_lookup_private(c->text, c->len, tag);
    return e == NULL ? DCM_VR_NONE : parser_pick_vr(p, f, e->vr, e->vr_alt, tag, len);
}

/*
 * Remembers the values later VR choices depend on: Private Creators, Pixel
 * Representation, the first LUT Descriptor value. The value is only peeked;
 * the caller still gets all of it.
 */
static cp_status parser_note_value(dcm_parser *p, parser_frame *f, uint32_t tag,
                                   uint64_t available)
{
    uint8_t b[PARSER_CREATOR_MAX];
    size_t got, n, start = 0;
    parser_creator *c;
    cp_status st;

    if (tag == DCM_TAG(0x0028, 0x0103) || tag == DCM_TAG(0x0028, 0x3002)) {
        if (available < 2)
            return CP_OK;
        st = dcm_source_peek(p->src, b, 2, &got);
        if (st != CP_OK || got < 2)
            return st;
        if (tag == DCM_TAG(0x0028, 0x0103))
            f->pixel_rep = rd16(b, f->big_endian);
        else
            f->lut_first = rd16(b, f->big_endian);
        return CP_OK;
    }

    n = available < sizeof b ? (size_t)available : sizeof b;
    st = dcm_source_peek(p->src, b, n, &got);
    if (st != CP_OK)
        return st;
    n = got;
    while (n > 0 && (b[n - 1] == ' ' || b[n - 1] == '\0'))
        n--;
    while (start < n && b[start] == ' ')
        start++;

    c = (parser_creator *)parser_find_creator(p, f, DCM_TAG_GROUP(tag),
                                              (uint8_t)DCM_TAG_ELEMENT(tag));
    if (c == NULL) {
        if (p->ncreators >= DCM_PRIVATE_CREATORS_MAX)
            return CP_OK;
        if (p->ncreators == p->creators_cap) {
            uint32_t cap = p->creators_cap == 0 ? 16 : p->creators_cap * 2;
            parser_creator *grown = cp_realloc(p->creators, cap * sizeof *grown);

            if (grown == NULL)
                return CP_ERR_NOMEM;
            p->creators = grown;
            p->creators_cap = cap;
        }
        c = &p->creators[p->ncreators++];
        c->group = DCM_TAG_GROUP(tag);
        c->block = (uint8_t)DCM_TAG_ELEMENT(tag);
    }
    c->len = (uint8_t)(n - start);
    memcpy(c->text, b + start, n - start);
    return CP_OK;
}

/* --- containers ----------------------------------------------------------------- */

static const char *frame_name(const parser_frame *f)
{
    if (f->kind == FRAME_SEQUENCE)
        return "sequence";
    if (f->kind == FRAME_FRAGMENTS)
        return "encapsulated pixel data";
    return "item";
}

/* Opens a container; NULL when the frames must move to the heap and cannot. */
static parser_frame *parser_push(dcm_parser *p, uint8_t kind, uint32_t tag,
                                 uint64_t header_offset, uint64_t value_offset,
                                 uint32_t length)
{
    const parser_frame *parent;
    parser_frame *f;

    if (p->nframes == PARSER_FRAMES_INLINE && p->frames == p->frames_inline) {
        parser_frame *all = cp_malloc(PARSER_FRAMES_MAX * sizeof *all);

        if (all == NULL)
            return NULL;
        memcpy(all, p->frames_inline, sizeof p->frames_inline);
        p->frames = all;
    }
    parent = parser_top(p);
    f = &p->frames[p->nframes++];

    f->kind = kind;
    f->explicit_vr = parent->explicit_vr;
    f->big_endian = parent->big_endian;
    f->defined = length != DCM_UNDEFINED_LENGTH;
    f->tag = tag;
    f->header_offset = header_offset;
    f->end = f->defined ? value_offset + length : NO_END;
    f->count = 0;
    f->pixel_rep = -1;
    f->lut_first = -1;
    f->creators = p->ncreators;
    if (kind != FRAME_DATASET)
        p->depth++;
    return f;
}

/* Closes the innermost container and describes its end in ev. */
static void parser_pop(dcm_parser *p, dcm_event *ev)
{
    parser_frame *f = parser_top(p);

    ev->tag = f->tag;
    ev->header_offset = f->header_offset;
    ev->offset = dcm_source_offset(p->src);
    if (f->kind == FRAME_DATASET) {
        ev->type = DCM_EVENT_ITEM_END;
        p->ncreators = f->creators;
    } else {
        ev->type = DCM_EVENT_SEQUENCE_END;
        p->depth--;
    }
    p->nframes--;
    ev->depth = p->depth;
    ev->big_endian = parser_top(p)->big_endian;
}

static cp_status parser_open(dcm_parser *p, cp_error *err, dcm_event *ev, uint8_t kind,
                             bool implicit_le)
{
    parser_frame *f;

    if (p->depth >= DCM_SEQUENCE_DEPTH_MAX)
        return parser_fail(p, err, CP_ERR_LIMIT, ev->header_offset, ev->tag,
                           "sequences nested deeper than %d", DCM_SEQUENCE_DEPTH_MAX);
    f = parser_push(p, kind, ev->tag, ev->header_offset, ev->offset, ev->length);
    if (f == NULL)
        return parser_fail(p, err, CP_ERR_NOMEM, ev->header_offset, ev->tag,
                           "out of memory");

    /* The content of a UN sequence is Implicit VR Little Endian (PS3.5 6.2.2). */
    if (implicit_le) {
        f->explicit_vr = false;
        f->big_endian = false;
    }
    return CP_OK;
}

/* --- element headers -------------------------------------------------------------- */

/* Whether the defined-length UN value at the source looks like items of a sequence. */
static bool parser_looks_like_items(dcm_parser *p, uint32_t len)
{
    uint8_t b[4];
    size_t got;

    if (len == 0)
        return true;
    if (len < 8 || dcm_source_peek(p->src, b, 4, &got) != CP_OK || got < 4)
        return false;
    return rdtag(b, false) == DCM_TAG_ITEM;
}

/* Decodes the VR and length of a data element; sets ev->vr, length, flags, offset. */
static cp_status parser_decode_header(dcm_parser *p, cp_error *err, const parser_frame *f,
                                      const uint8_t *h, size_t got, dcm_event *ev,
                                      size_t *header_len)
{
    dcm_vr vr;

    if (!f->explicit_vr) {
        ev->length = rd32(h + 4, f->big_endian);
        *header_len = 8;
        vr = parser_dict_vr(p, f, ev->tag, ev->length);
        if (vr != DCM_VR_NONE)
            ev->flags |= DCM_ELEMENT_VR_FROM_DICTIONARY;
        ev->vr = vr;
        return CP_OK;
    }

    vr = dcm_vr_from_bytes(h[4], h[5]);
    if (vr == DCM_VR_NONE) {
        /* PS3.5 6.2: an unknown VR has the long form; read it as UN. */
        if (got < 12 || h[6] != 0 || h[7] != 0)
            return parser_fail(p, err, CP_ERR_MALFORMED, ev->header_offset, ev->tag,
                               "unknown VR bytes 0x%02X 0x%02X", h[4], h[5]);
        vr = DCM_VR_UN;
    }
    if (dcm_vr_has_long_length(vr) || vr == DCM_VR_UN) {
        if (got < 12)
            return parser_fail(p, err, CP_ERR_TRUNCATED, ev->header_offset, ev->tag,
                               "element header cut short: %zu of 12 bytes", got);
        ev->length = rd32(h + 8, f->big_endian);
        *header_len = 12;
    } else {
        ev->length = rd16(h + 6, f->big_endian);
        *header_len = 8;
    }
    ev->vr = vr;
    return CP_OK;
}

/* An explicit UN whose tag the dictionary knows takes the dictionary's VR. */
static void parser_resolve_un(dcm_parser *p, const parser_frame *f, dcm_event *ev)
{
    dcm_vr vr;

    if (ev->vr != DCM_VR_UN || ev->length == DCM_UNDEFINED_LENGTH)
        return;
    vr = parser_dict_vr(p, f, ev->tag, ev->length);
    if (vr == DCM_VR_NONE || vr == DCM_VR_UN)
        return;
    if (vr == DCM_VR_SQ && !parser_looks_like_items(p, ev->length))
        return;
    ev->vr = vr;
    ev->flags |= DCM_ELEMENT_WAS_UN | DCM_ELEMENT_VR_FROM_DICTIONARY;
}

/* The first element tells whether the declared VR form is the real one. */
static void parser_detect_vr(dcm_parser *p, parser_frame *f, const uint8_t *h, size_t got,
                             uint64_t offset)
{
    bool vr_ok;

    p->first = false;
    if (!p->opts.detect_vr || got < 8 || DCM_TAG_GROUP(rdtag(h, f->big_endian)) == 0xFFFE)
        return;

    vr_ok = dcm_vr_from_bytes(h[4], h[5]) != DCM_VR_NONE;
    if (f->explicit_vr && !vr_ok) {
        f->explicit_vr = false;
        p->flags |= DCM_PARSER_SYNTAX_MISMATCH;
    } else if (!f->explicit_vr && vr_ok) {
        /* Two letters as the low half of an implicit length mean at least 16 KiB. */
        uint32_t implicit_len = rd32(h + 4, f->big_endian);
        uint64_t size = parser_size(p);

        if (size != NO_END && implicit_len <= size - offset - 8)
            return;
        f->explicit_vr = true;
        p->flags |= DCM_PARSER_SYNTAX_MISMATCH;
    }
}

/* A data element in a data set: a leaf value, a sequence or encapsulated pixel data. */
static cp_status parser_element(dcm_parser *p, cp_error *err, parser_frame *f,
                                const uint8_t *h, size_t got, dcm_event *ev)
{
    size_t header_len = 0;
    uint64_t left;
    cp_status st;

    st = parser_decode_header(p, err, f, h, got, ev, &header_len);
    if (st != CP_OK)
        return st;
    if (++p->elements > DCM_DATASET_ELEMENTS_MAX)
        return parser_fail(p, err, CP_ERR_LIMIT, ev->header_offset, ev->tag,
                           "more than %u elements", DCM_DATASET_ELEMENTS_MAX);

    st = dcm_source_skip(p->src, header_len);
    if (st != CP_OK)
        return parser_source_failed(p, err, st, ev->header_offset, ev->tag);
    ev->offset = ev->header_offset + header_len;
    if (f->explicit_vr)
        parser_resolve_un(p, f, ev);

    if (ev->length == DCM_UNDEFINED_LENGTH) {
        ev->flags |= DCM_ELEMENT_UNDEFINED_LENGTH;
        ev->type = DCM_EVENT_SEQUENCE_BEGIN;
        if (ev->vr == DCM_VR_SQ)
            return parser_open(p, err, ev, FRAME_SEQUENCE, false);
        if ((ev->vr == DCM_VR_UN || ev->vr == DCM_VR_NONE) && ev->tag != DCM_TAG_PIXEL_DATA) {
            /* PS3.5 6.2.2: an undefined-length UN is a sequence in implicit VR. */
            if (ev->vr == DCM_VR_UN && f->explicit_vr)
                ev->flags |= DCM_ELEMENT_WAS_UN;
            ev->vr = DCM_VR_SQ;
            return parser_open(p, err, ev, FRAME_SEQUENCE, true);
        }
        /* Pixel data with an undefined length is encapsulated whatever its VR says. */
        if (ev->vr == DCM_VR_UN && f->explicit_vr)
            ev->flags |= DCM_ELEMENT_WAS_UN;
        if (ev->vr == DCM_VR_UN || ev->vr == DCM_VR_NONE)
            ev->vr = DCM_VR_OB;
        ev->flags |= DCM_ELEMENT_ENCAPSULATED;
        return parser_open(p, err, ev, FRAME_FRAGMENTS, false);
    }

    if (ev->vr == DCM_VR_SQ) {
        ev->type = DCM_EVENT_SEQUENCE_BEGIN;
        return parser_open(p, err, ev, FRAME_SEQUENCE,
                           (ev->flags & DCM_ELEMENT_WAS_UN) != 0);
    }

    if (ev->vr == DCM_VR_NONE)
        ev->vr = DCM_VR_UN;
    ev->type = DCM_EVENT_ELEMENT;
    ev->available = ev->length;
    p->value_left = ev->length;
    p->value_header = ev->header_offset;
    p->value_offset = ev->offset;
    p->value_tag = ev->tag;
    p->value_length = ev->length;

    /* The source stands at the value: what it has left is what the value can have. */
    left = dcm_source_left(p->src, ev->length);
    if (ev->length > left) {
        ev->available = left;
        ev->flags |= DCM_ELEMENT_TRUNCATED;
        p->value_left = left;
        return parser_value_truncated(p, err, left);
    }
    if (dcm_tag_is_private_creator(ev->tag) || ev->tag == DCM_TAG(0x0028, 0x0103) ||
        ev->tag == DCM_TAG(0x0028, 0x3002)) {
        st = parser_note_value(p, f, ev->tag, ev->available);
        if (st != CP_OK)
            return parser_fail(p, err, st, ev->header_offset, ev->tag,
                               "reading the value failed");
    }
    return CP_OK;
}

/* --- the event loop ----------------------------------------------------------------- */

static cp_status parser_skip_delimiter(dcm_parser *p, cp_error *err, dcm_event *ev)
{
    cp_status st = dcm_source_skip(p->src, 8);

    if (st != CP_OK)
        return parser_source_failed(p, err, st, ev->header_offset, ev->tag);
    return CP_OK;
}

/* An item header where a sequence or encapsulated pixel data expects one. */
static cp_status parser_item(dcm_parser *p, cp_error *err, parser_frame *f,
                             const uint8_t *h, dcm_event *ev)
{
    uint32_t max = f->kind == FRAME_SEQUENCE ? DCM_SEQUENCE_ITEMS_MAX : DCM_FRAGMENTS_MAX;
    uint64_t left;
    cp_status st;

    ev->length = rd32(h + 4, f->big_endian);
    ev->offset = ev->header_offset + 8;
    if (++f->count > max)
        return parser_fail(p, err, CP_ERR_LIMIT, ev->header_offset, f->tag,
                           "more than %u items", max);
    st = parser_skip_delimiter(p, err, ev);
    if (st != CP_OK)
        return st;

    if (f->kind == FRAME_SEQUENCE) {
        ev->type = DCM_EVENT_ITEM_BEGIN;
        if (ev->length == DCM_UNDEFINED_LENGTH)
            ev->flags |= DCM_ELEMENT_UNDEFINED_LENGTH;
        if (parser_push(p, FRAME_DATASET, ev->tag, ev->header_offset, ev->offset,
                        ev->length) == NULL)
            return parser_fail(p, err, CP_ERR_NOMEM, ev->header_offset, ev->tag,
                               "out of memory");
        return CP_OK;
    }

    if (ev->length == DCM_UNDEFINED_LENGTH)
        return parser_fail(p, err, CP_ERR_MALFORMED, ev->header_offset, f->tag,
                           "fragment %u has an undefined length", f->count - 1);
    ev->type = DCM_EVENT_FRAGMENT;
    ev->available = ev->length;
    p->value_left = ev->length;
    p->value_header = ev->header_offset;
    p->value_offset = ev->offset;
    p->value_tag = ev->tag;
    p->value_length = ev->length;
    left = dcm_source_left(p->src, ev->length);
    if (ev->length > left) {
        ev->available = left;
        ev->flags |= DCM_ELEMENT_TRUNCATED;
        p->value_left = left;
        return parser_value_truncated(p, err, left);
    }
    return CP_OK;
}

/* One header in a sequence or in encapsulated pixel data: an item or the end. */
static cp_status parser_in_sequence(dcm_parser *p, cp_error *err, parser_frame *f,
                                    const uint8_t *h, dcm_event *ev, bool *emitted)
{
    cp_status st;

    *emitted = true;
    if (ev->tag == DCM_TAG_ITEM)
        return parser_item(p, err, f, h, ev);

    if (ev->tag == DCM_TAG_SEQUENCE_DELIMITATION && !f->defined) {
        st = parser_skip_delimiter(p, err, ev);
        if (st == CP_OK)
            parser_pop(p, ev);
        return st;
    }
    if (ev->tag == DCM_TAG_SEQUENCE_DELIMITATION || ev->tag == DCM_TAG_ITEM_DELIMITATION) {
        *emitted = false;
        p->flags |= DCM_PARSER_STRAY_DELIMITER;
        return parser_skip_delimiter(p, err, ev);
    }
    return parser_fail(p, err, CP_ERR_MALFORMED, ev->header_offset, ev->tag,
                       "expected an item of %s (%04X,%04X)", frame_name(f),
                       DCM_TAG_GROUP(f->tag), DCM_TAG_ELEMENT(f->tag));
}

/* One header in a data set: an element, the end of an item, or a stray delimiter. */
static cp_status parser_in_dataset(dcm_parser *p, cp_error *err, parser_frame *f,
                                   const uint8_t *h, size_t got, dcm_event *ev,
                                   bool *emitted)
{
    bool root = p->nframes == 1;

    *emitted = true;
    if (root && p->opts.stop_before != 0 && ev->tag >= p->opts.stop_before) {
        p->done = p->stopped = true;
        p->stop_tag = ev->tag;
        ev->type = DCM_EVENT_END;
        ev->stopped = true;
        return CP_OK;
    }

    if (DCM_TAG_GROUP(ev->tag) != 0xFFFE)
        return parser_element(p, err, f, h, got, ev);

    if (ev->tag == DCM_TAG_ITEM_DELIMITATION && !root && !f->defined) {
        cp_status st = parser_skip_delimiter(p, err, ev);

        if (st == CP_OK)
            parser_pop(p, ev);
        return st;
    }
    if (ev->tag == DCM_TAG_SEQUENCE_DELIMITATION && !root && !f->defined) {
        /* The item delimiter is missing: the item ends with its sequence. */
        parser_pop(p, ev);
        return CP_OK;
    }
    if (ev->tag == DCM_TAG_SEQUENCE_DELIMITATION || ev->tag == DCM_TAG_ITEM_DELIMITATION) {
        *emitted = false;
        p->flags |= DCM_PARSER_STRAY_DELIMITER;
        return parser_skip_delimiter(p, err, ev);
    }
    return parser_fail(p, err, CP_ERR_MALFORMED, ev->header_offset, ev->tag,
                       "item tag outside a sequence");
}

static void parser_end_event(dcm_parser *p, dcm_event *ev)
{
    ev->type = DCM_EVENT_END;
    ev->stopped = p->stopped;
    ev->tag = p->stopped ? p->stop_tag : 0;
    ev->offset = ev->header_offset = dcm_source_offset(p->src);
}

cp_status dcm_parser_next(dcm_parser *p, dcm_event *ev, cp_error *err)
{
    const uint8_t *h;
    size_t got;
    bool emitted;
    cp_status st;

    memset(ev, 0, sizeof *ev);
    if (p->failed != CP_OK)
        return parser_replay(p, err);
    if (p->value_left > 0) {
        st = dcm_parser_skip_value(p, err);
        if (st != CP_OK)
            return st;
    }

    while (!p->done) {
        parser_frame *f = parser_top(p);
        uint64_t offset = dcm_source_offset(p->src);

        ev->depth = p->depth;
        ev->big_endian = f->big_endian;
        ev->header_offset = offset;
        /*
         * Content that runs past a container's declared length is tolerated,
         * as other readers do (DICOMDIRs with wrong item lengths exist): the
         * container ends after it.
         */
        if (f->defined && offset >= f->end) {
            parser_pop(p, ev);
            return CP_OK;
        }

        /* h stays valid until the header is consumed: nothing reads in between. */
        st = dcm_source_peek_ptr(p->src, 12, &h, &got);
        if (st != CP_OK)
            return parser_source_failed(p, err, st, offset, CP_ERROR_NO_TAG);
        if (got == 0 && p->nframes == 1) {
            p->done = true;
            break;
        }
        if (got == 0)
            return parser_fail(p, err, CP_ERR_TRUNCATED, f->header_offset, f->tag,
                               "the input ends inside %s", frame_name(f));
        /* Four bytes are enough to say which element was cut. */
        if (got < 8)
            return parser_fail(p, err, CP_ERR_TRUNCATED, offset,
                               got >= 4 ? rdtag(h, f->big_endian) : CP_ERROR_NO_TAG,
                               "element header cut short: %zu of 8 bytes", got);
        if (p->first && p->nframes == 1)
            parser_detect_vr(p, f, h, got, offset);

        ev->tag = rdtag(h, f->big_endian);
        if (f->kind == FRAME_DATASET)
            st = parser_in_dataset(p, err, f, h, got, ev, &emitted);
        else
            st = parser_in_sequence(p, err, f, h, ev, &emitted);
        if (st != CP_OK || emitted)
            return st;
        memset(ev, 0, sizeof *ev);
    }

    parser_end_event(p, ev);
    return CP_OK;
}

cp_status dcm_parser_peek_tag(dcm_parser *p, uint32_t *tag, cp_error *err)
{
    uint8_t h[4];
    size_t got;
    cp_status st;

    if (p->failed != CP_OK)
        return parser_replay(p, err);
    st = dcm_parser_skip_value(p, err);
    if (st != CP_OK)
        return st;
    st = dcm_source_peek(p->src, h, sizeof h, &got);
    if (st != CP_OK)
        return parser_source_failed(p, err, st, dcm_source_offset(p->src), CP_ERROR_NO_TAG);
    if (got < 4)
        return CP_ERR_NOT_FOUND;
    *tag = rdtag(h, parser_top(p)->big_endian);
    return CP_OK;
}
