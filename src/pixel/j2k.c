/*
 * j2k.c - JPEG 2000 frames (PS3.5 A.4.4 and 8.2.4, ITU T.800), decoded
 * through OpenJPEG from memory.
 *
 * The stream reads only the bytes it is given; OpenJPEG's messages are
 * kept in a struct (the first error becomes the detail) instead of being
 * printed. A J2K codestream starts with SOC (FF 4F FF 51); a JP2 file with
 * the signature box (00 00 00 0C 6A 50 20 20). When the codestream uses the
 * multiple component transform, OpenJPEG undoes it, so YBR_ICT and YBR_RCT
 * frames come out as RGB (PS3.5 8.2.4 says the data set's photometric names
 * the transform that was applied, not the colour of the decoded samples).
 */
#include <openjpeg.h>
#include <string.h>

#include "pixel/codec.h"

typedef struct {
    const uint8_t *data;
    size_t len;
    size_t pos;
} j2k_reader;

typedef struct {
    bool failed;
    char first[160];
} j2k_messages;

static OPJ_SIZE_T j2k_read(void *out, OPJ_SIZE_T n, void *user)
{
    j2k_reader *r = user;
    size_t left = r->len - r->pos;

    if (left == 0)
        return (OPJ_SIZE_T)-1;
    if (n > left)
        n = left;
    memcpy(out, r->data + r->pos, n);
    r->pos += n;
    return n;
}

static OPJ_OFF_T j2k_skip(OPJ_OFF_T n, void *user)
{
    j2k_reader *r = user;

    if (n < 0) {
        if ((uint64_t)-n > r->pos)
            return -1;
        r->pos -= (size_t)-n;
        return n;
    }
    if ((uint64_t)n > r->len - r->pos)
        n = (OPJ_OFF_T)(r->len - r->pos);
    r->pos += (size_t)n;
    return n;
}

static OPJ_BOOL j2k_seek(OPJ_OFF_T n, void *user)
{
    j2k_reader *r = user;

    if (n < 0 || (uint64_t)n > r->len)
        return OPJ_FALSE;
    r->pos = (size_t)n;
    return OPJ_TRUE;
}

static void j2k_on_error(const char *msg, void *user)
{
    j2k_messages *m = user;
    size_t n;

    if (m->failed)
        return;
    m->failed = true;
    n = strcspn(msg, "\n");
    if (n >= sizeof(m->first))
        n = sizeof(m->first) - 1;
    memcpy(m->first, msg, n);
    m->first[n] = '\0';
}

static void j2k_on_quiet(const char *msg, void *user)
{
    (void)msg;
    (void)user;
}

/* Copies the decoded components into the frame's container, clamped to their range. */
static void j2k_store(const px_image *img, const opj_image_t *im, px_frame *frame)
{
    size_t pixels = (size_t)frame->rows * frame->columns;
    uint32_t samples = frame->samples_per_pixel;
    unsigned bits = img->bits_stored;
    int64_t lo = img->is_signed ? -((int64_t)1 << (bits - 1)) : 0;
    int64_t hi = img->is_signed ? ((int64_t)1 << (bits - 1)) - 1 : ((int64_t)1 << bits) - 1;

    for (uint32_t c = 0; c < samples; c++) {
        const OPJ_INT32 *src = im->comps[c].data;
        bool sgnd = im->comps[c].sgnd != 0;
        unsigned prec = im->comps[c].prec;

        for (size_t i = 0; i < pixels; i++) {
            int64_t v = src[i];
            size_t k = i * samples + c;

            /* A signed image coded as unsigned (or the reverse) keeps its bit pattern. */
            if (img->is_signed && !sgnd && prec <= 32 && v >= ((int64_t)1 << (prec - 1)))
                v -= (int64_t)1 << prec;
            else if (!img->is_signed && sgnd && v < 0)
                v += (int64_t)1 << prec;
            v = v < lo ? lo : v > hi ? hi : v;
            switch (frame->type) {
            case PX_U8: frame->data[k] = (uint8_t)v; break;
            case PX_S8: ((int8_t *)frame->data)[k] = (int8_t)v; break;
            case PX_U16: ((uint16_t *)(void *)frame->data)[k] = (uint16_t)v; break;
            case PX_S16: ((int16_t *)(void *)frame->data)[k] = (int16_t)v; break;
            case PX_U32: ((uint32_t *)(void *)frame->data)[k] = (uint32_t)v; break;
            case PX_S32: ((int32_t *)(void *)frame->data)[k] = (int32_t)v; break;
            default: break;
            }
        }
    }
}

/* Whether the main header's COD asks for the multiple component transform. */
static bool j2k_uses_mct(opj_codec_t *codec)
{
    opj_codestream_info_v2_t *info = opj_get_cstr_info(codec);
    bool mct;

    if (info == NULL)
        return false;
    mct = info->m_default_tile_info.mct != 0;
    opj_destroy_cstr_info(&info);
    return mct;
}

static cp_status j2k_check_header(const px_image *img, const opj_image_t *im, cp_error *err)
{
    if (im->x1 <= im->x0 || im->y1 <= im->y0 || im->x1 - im->x0 != img->columns ||
        im->y1 - im->y0 != img->rows || im->numcomps != img->samples_per_pixel)
        return cp_error_set(err, CP_ERR_MALFORMED, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "JPEG 2000 is %ux%u x%u, the image %ux%u x%u", im->x1 - im->x0,
                            im->y1 - im->y0, im->numcomps, img->columns, img->rows,
                            img->samples_per_pixel);
    return CP_OK;
}

static cp_status j2k_check(const px_image *img, const opj_image_t *im, px_sample_type type,
                           cp_error *err)
{
    if (im->numcomps != img->samples_per_pixel || (im->numcomps != 1 && im->numcomps != 3))
        return cp_error_set(err, CP_ERR_MALFORMED, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "JPEG 2000 has %u components, the image %u samples", im->numcomps,
                            img->samples_per_pixel);
    if (img->bits_stored < 1 || img->bits_stored > 16 || px_sample_size(type) > 4)
        return cp_error_set(err, CP_ERR_UNSUPPORTED, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "JPEG 2000 with %u bits stored", img->bits_stored);
    for (OPJ_UINT32 c = 0; c < im->numcomps; c++) {
        const opj_image_comp_t *comp = &im->comps[c];

        if (comp->w != img->columns || comp->h != img->rows || comp->dx != 1 || comp->dy != 1)
            return cp_error_set(err, CP_ERR_UNSUPPORTED, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                                "JPEG 2000 component %u is %ux%u (step %u,%u), image %ux%u",
                                c, comp->w, comp->h, comp->dx, comp->dy, img->columns,
                                img->rows);
        if (comp->prec < 1 || comp->prec > 16 || comp->data == NULL)
            return cp_error_set(err, CP_ERR_UNSUPPORTED, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                                "JPEG 2000 component %u of precision %u", c, comp->prec);
    }
    return CP_OK;
}

cp_status px_j2k_decode(const px_image *img, const uint8_t *bytes, size_t len, px_frame *frame,
                        cp_error *err)
{
    static const uint8_t jp2_sig[] = { 0, 0, 0, 0x0C, 0x6A, 0x50, 0x20, 0x20 };
    j2k_reader reader = { bytes, len, 0 };
    j2k_messages msg = { false, "" };
    opj_dparameters_t params;
    opj_stream_t *stream = NULL;
    opj_codec_t *codec = NULL;
    opj_image_t *im = NULL;
    px_sample_type type = px_image_sample_type(img);
    OPJ_CODEC_FORMAT format;
    cp_status st = CP_OK;

    memset(frame, 0, sizeof(*frame));
    if (len >= 4 && bytes[0] == 0xFF && bytes[1] == 0x4F && bytes[2] == 0xFF &&
        bytes[3] == 0x51)
        format = OPJ_CODEC_J2K;
    else if (len >= sizeof(jp2_sig) && memcmp(bytes, jp2_sig, sizeof(jp2_sig)) == 0)
        format = OPJ_CODEC_JP2;
    else
        return cp_error_set(err, CP_ERR_MALFORMED, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "JPEG 2000: neither a codestream (SOC SIZ) nor a JP2 file");

    codec = opj_create_decompress(format);
    stream = opj_stream_create(64 * 1024, OPJ_TRUE);
    if (codec == NULL || stream == NULL) {
        st = cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "OpenJPEG decoder");
        goto done;
    }
    opj_stream_set_user_data(stream, &reader, NULL);
    opj_stream_set_user_data_length(stream, len);
    opj_stream_set_read_function(stream, j2k_read);
    opj_stream_set_skip_function(stream, j2k_skip);
    opj_stream_set_seek_function(stream, j2k_seek);
    opj_set_error_handler(codec, j2k_on_error, &msg);
    opj_set_warning_handler(codec, j2k_on_quiet, NULL);
    opj_set_info_handler(codec, j2k_on_quiet, NULL);

    opj_set_default_decoder_parameters(&params);
    if (!opj_setup_decoder(codec, &params) || !opj_read_header(stream, codec, &im)) {
        st = cp_error_set(err, CP_ERR_MALFORMED, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "JPEG 2000 header: %s", msg.failed ? msg.first : "unreadable");
        goto done;
    }

    /* The header's geometry must be the image's before OpenJPEG allocates for it. */
    st = j2k_check_header(img, im, err);
    if (st != CP_OK)
        goto done;
    if (!opj_decode(codec, stream, im) || !opj_end_decompress(codec, stream) || msg.failed) {
        st = cp_error_set(err, CP_ERR_MALFORMED, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "JPEG 2000: %s", msg.failed ? msg.first : "decoding failed");
        goto done;
    }

    st = j2k_check(img, im, type, err);
    if (st != CP_OK)
        goto done;
    st = px_frame_alloc(frame, img->rows, img->columns, img->samples_per_pixel, type, err);
    if (st != CP_OK)
        goto done;
    frame->bits_stored = img->bits_stored;
    frame->photometric = img->photometric;
    if (im->numcomps == 3 && (img->photometric == PX_YBR_ICT ||
                              img->photometric == PX_YBR_RCT || j2k_uses_mct(codec)))
        frame->photometric = PX_RGB;
    j2k_store(img, im, frame);

done:
    if (st != CP_OK)
        px_frame_clear(frame);
    if (im != NULL)
        opj_image_destroy(im);
    if (stream != NULL)
        opj_stream_destroy(stream);
    if (codec != NULL)
        opj_destroy_codec(codec);
    return st;
}
