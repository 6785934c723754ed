/*
 * encode.c - 8-bit pictures to JPEG (ITU T.81 baseline, through
 * libjpeg-turbo) and PNG (ISO/IEC 15948, through libpng), the formats
 * PS3.18 (DICOMweb rendered resources, 8.7.3) serves to browsers.
 *
 * Colour JPEG keeps full chroma (4:4:4) at quality 90 and above, where a
 * reader of medical colour images would see 4:2:0's chroma smearing, and
 * uses 4:2:0 below. PNG uses a fast zlib level: it is made per request.
 */
#include <png.h>
#include <setjmp.h>
#include <string.h>
#include <turbojpeg.h>

#include "pixel/render.h"

/* PNG's zlib level: 2 keeps most of the compression at a fraction of level 6's time. */
#define PX_PNG_LEVEL 2

/* Quality from which colour JPEG keeps full-resolution chroma. */
#define PX_JPEG_FULL_CHROMA_QUALITY 90

static cp_status encode_check(const px_picture *pic, cp_error *err)
{
    if (pic == NULL || pic->data == NULL || pic->width == 0 || pic->height == 0 ||
        (pic->channels != 1 && pic->channels != 3) || pic->width > INT32_MAX / 3 ||
        pic->height > INT32_MAX)
        return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "picture to encode is empty or not grey or RGB");
    return CP_OK;
}

cp_status px_encode_jpeg(const px_picture *pic, int quality, cp_buf *out, cp_error *err)
{
    tjhandle tj;
    unsigned char *jpeg = NULL;
    unsigned long size = 0;
    int subsamp, format;
    cp_status st = encode_check(pic, err);

    if (st != CP_OK)
        return st;
    if (quality < 1 || quality > 100)
        return cp_error_set(err, CP_ERR_INVALID, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "JPEG quality %d outside 1-100", quality);
    if (pic->channels == 1) {
        format = TJPF_GRAY;
        subsamp = TJSAMP_GRAY;
    } else {
        format = TJPF_RGB;
        subsamp = quality >= PX_JPEG_FULL_CHROMA_QUALITY ? TJSAMP_444 : TJSAMP_420;
    }

    tj = tjInitCompress();
    if (tj == NULL)
        return cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "TurboJPEG compressor");
    if (tjCompress2(tj, pic->data, (int)pic->width, 0, (int)pic->height, format, &jpeg, &size,
                    subsamp, quality, 0) != 0) {
        st = cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                          "JPEG encoding: %s", tjGetErrorStr2(tj));
        goto done;
    }
    st = cp_buf_append(out, jpeg, size);
    if (st != CP_OK)
        cp_error_set(err, st, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG, "JPEG of %lu bytes", size);

done:
    tjFree(jpeg);
    tjDestroy(tj);
    return st;
}

typedef struct {
    cp_buf *out;
    cp_status st;
} png_sink;

static void png_write_cb(png_structp png, png_bytep data, size_t len)
{
    png_sink *sink = png_get_io_ptr(png);

    if (sink->st == CP_OK)
        sink->st = cp_buf_append(sink->out, data, len);
    if (sink->st != CP_OK)
        png_error(png, "out of memory");
}

static void png_flush_cb(png_structp png)
{
    (void)png;
}

static void png_error_cb(png_structp png, png_const_charp msg)
{
    (void)msg;
    png_longjmp(png, 1);
}

static void png_warning_cb(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;
}

/* The libpng calls, apart so that no local of px_encode_png lives across setjmp. */
static bool png_encode_rows(png_structp png, png_infop info, const px_picture *pic)
{
    size_t stride = (size_t)pic->width * pic->channels;

    if (setjmp(png_jmpbuf(png)))
        return false;
    png_set_IHDR(png, info, pic->width, pic->height, 8,
                 pic->channels == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_set_compression_level(png, PX_PNG_LEVEL);
    png_set_filter(png, 0, PNG_FILTER_SUB | PNG_FILTER_UP);
    png_write_info(png, info);
    for (uint32_t y = 0; y < pic->height; y++)
        png_write_row(png, pic->data + (size_t)y * stride);
    png_write_end(png, info);
    return true;
}

cp_status px_encode_png(const px_picture *pic, cp_buf *out, cp_error *err)
{
    png_sink sink = { out, CP_OK };
    png_structp png;
    png_infop info;
    size_t start = out->len;
    cp_status st = encode_check(pic, err);

    if (st != CP_OK)
        return st;
    png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, png_error_cb, png_warning_cb);
    if (png == NULL)
        return cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "libpng writer");
    info = png_create_info_struct(png);
    if (info == NULL) {
        png_destroy_write_struct(&png, NULL);
        return cp_error_set(err, CP_ERR_NOMEM, CP_ERROR_NO_OFFSET, CP_ERROR_NO_TAG,
                            "libpng info");
    }
    png_set_write_fn(png, &sink, png_write_cb, png_flush_cb);

    if (!png_encode_rows(png, info, pic)) {
        st = cp_error_set(err, sink.st != CP_OK ? sink.st : CP_ERR_NOMEM, CP_ERROR_NO_OFFSET,
                          CP_ERROR_NO_TAG, "PNG encoding failed");
        out->len = start;
        if (out->data != NULL)
            out->data[start] = 0;
    }
    png_destroy_write_struct(&png, &info);
    return st;
}
