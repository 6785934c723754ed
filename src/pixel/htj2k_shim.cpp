/*
 * htj2k_shim.cpp - High-Throughput JPEG 2000 (ITU T.814; PS3.5 A.4.11 and
 * 8.2.4) through OpenJPH: the only C++ in cloudpacs, kept behind the
 * extern "C" functions of htj2k_shim.h.
 *
 * OpenJPH reports problems through global message objects; its default
 * error object prints and throws. Ours, installed once, formats the message
 * and throws without printing, warnings and information are dropped, and
 * every exception is caught at the shim's edge and turned into a result
 * code, so none reaches C.
 */
#include <cstdio>
#include <sys/types.h>
#include <cstring>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>

#include <openjph/ojph_arch.h>
#include <openjph/ojph_codestream.h>
#include <openjph/ojph_file.h>
#include <openjph/ojph_mem.h>
#include <openjph/ojph_message.h>
#include <openjph/ojph_params.h>

#include "pixel/htj2k_shim.h"

namespace {

/* The deepest component the int32 paths of OpenJPH 0.9 handle losslessly here. */
constexpr uint32_t shim_bit_depth_max = 16;
constexpr uint32_t shim_components_max = 3;

class shim_error : public ojph::message_error {
public:
    /* The format is thrown unformatted: its words say what failed, the numbers need not. */
    void operator()(int code, const char *file, int line, const char *fmt, ...) override
    {
        (void)code;
        (void)file;
        (void)line;
        throw std::runtime_error(fmt);
    }
};

class shim_quiet_warning : public ojph::message_warning {
public:
    void operator()(int, const char *, int, const char *, ...) override {}
};

class shim_quiet_info : public ojph::message_info {
public:
    void operator()(int, const char *, int, const char *, ...) override {}
};

shim_error the_error;
shim_quiet_warning the_warning;
shim_quiet_info the_info;
std::once_flag configured;

/*
 * Debian's OpenJPH 0.9 calls its default message objects directly, so
 * configure_error() does not take: its default error object prints to the
 * error stream, then throws. The streams are therefore cookie streams that
 * print nowhere; the error one keeps the text for the thread that failed.
 */
thread_local char last_error[PX_HTJ2K_SHIM_MESSAGE_MAX];
thread_local bool truncated;

ssize_t shim_record(void *cookie, const char *data, size_t len)
{
    size_t have = std::strlen(last_error);
    size_t room = sizeof(last_error) - 1 - have;

    (void)cookie;
    if (len < room)
        room = len;
    std::memcpy(last_error + have, data, room);
    last_error[have + room] = '\0';
    return (ssize_t)len;
}

/* OpenJPH only informs when data ends inside a tile; for us that frame is broken. */
ssize_t shim_inform(void *cookie, const char *data, size_t len)
{
    (void)cookie;
    if (memmem(data, len, "terminated early", 16) != nullptr)
        truncated = true;
    return (ssize_t)len;
}

ssize_t shim_discard(void *cookie, const char *data, size_t len)
{
    (void)cookie;
    (void)data;
    return (ssize_t)len;
}

void shim_configure()
{
    std::call_once(configured, [] {
        cookie_io_functions_t record = { nullptr, shim_record, nullptr, nullptr };
        cookie_io_functions_t discard = { nullptr, shim_discard, nullptr, nullptr };
        cookie_io_functions_t inform = { nullptr, shim_inform, nullptr, nullptr };
        FILE *err = fopencookie(nullptr, "w", record);
        FILE *quiet = fopencookie(nullptr, "w", discard);
        FILE *info = fopencookie(nullptr, "w", inform);

        if (err == nullptr || quiet == nullptr || info == nullptr)
            throw std::bad_alloc();
        setvbuf(err, nullptr, _IONBF, 0);
        setvbuf(info, nullptr, _IONBF, 0);
        ojph::set_info_stream(info);
        ojph::set_warning_stream(quiet);
        ojph::set_error_stream(err);
        ojph::configure_error(&the_error);
        ojph::configure_warning(&the_warning);
        ojph::configure_info(&the_info);
    });
    last_error[0] = '\0';
    truncated = false;
}

/* The recorded error text without its "ojph error 0x... at file:line: " prefix. */
const char *shim_recorded(const char *fallback)
{
    const char *p = std::strstr(last_error, ": ");

    if (last_error[0] == '\0')
        return fallback;
    return p != nullptr ? p + 2 : last_error;
}

void shim_message(char *msg, const char *text)
{
    size_t n = std::strcspn(text, "\n");

    std::snprintf(msg, PX_HTJ2K_SHIM_MESSAGE_MAX, "%.*s", (int)n, text);
}

px_htj2k_shim_result shim_decode(const uint8_t *bytes, size_t len, px_htj2k_shim_alloc_fn alloc,
                                 void *ctx, char *msg)
{
    ojph::mem_infile file;
    ojph::codestream cs;

    file.open(bytes, len);
    cs.read_headers(&file);

    ojph::param_siz siz = cs.access_siz();
    ojph::param_cod cod = cs.access_cod();
    ojph::point extent = siz.get_image_extent();
    ojph::point offset = siz.get_image_offset();
    px_htj2k_shim_header hdr{};

    if (extent.x <= offset.x || extent.y <= offset.y) {
        shim_message(msg, "empty image");
        return PX_HTJ2K_SHIM_MALFORMED;
    }
    hdr.width = extent.x - offset.x;
    hdr.height = extent.y - offset.y;
    hdr.components = siz.get_num_components();
    if (hdr.components < 1 || hdr.components > shim_components_max) {
        shim_message(msg, "only 1 to 3 components are supported");
        return PX_HTJ2K_SHIM_UNSUPPORTED;
    }
    hdr.bit_depth = siz.get_bit_depth(0);
    hdr.is_signed = siz.is_signed(0);
    hdr.color_transform = cod.is_using_color_transform();
    hdr.reversible = cod.is_reversible();
    for (uint32_t c = 0; c < hdr.components; c++) {
        ojph::point ds = siz.get_downsampling(c);

        if (ds.x != 1 || ds.y != 1 || siz.get_recon_width(c) != hdr.width ||
            siz.get_recon_height(c) != hdr.height) {
            shim_message(msg, "subsampled components are not supported");
            return PX_HTJ2K_SHIM_UNSUPPORTED;
        }
        if (siz.get_bit_depth(c) != hdr.bit_depth || siz.is_signed(c) != hdr.is_signed ||
            hdr.bit_depth > shim_bit_depth_max) {
            shim_message(msg, "components of different or too deep bit depths");
            return PX_HTJ2K_SHIM_UNSUPPORTED;
        }
    }

    int32_t *out = alloc(ctx, &hdr);
    if (out == nullptr) {
        shim_message(msg, "stopped by the caller");
        return PX_HTJ2K_SHIM_ABORTED;
    }

    cs.set_planar(false);
    cs.create();

    uint32_t rows_done[shim_components_max] = {0, 0, 0};
    uint64_t lines = (uint64_t)hdr.height * hdr.components;
    size_t stride = (size_t)hdr.width * hdr.components;

    for (uint64_t n = 0; n < lines; n++) {
        ojph::ui32 c = 0;
        ojph::line_buf *line = cs.pull(c);

        if (line == nullptr || c >= hdr.components || rows_done[c] >= hdr.height ||
            line->size < hdr.width || line->i32 == nullptr) {
            shim_message(msg, "unexpected line from the decoder");
            return PX_HTJ2K_SHIM_MALFORMED;
        }
        int32_t *dst = out + (size_t)rows_done[c] * stride + c;
        for (uint32_t x = 0; x < hdr.width; x++)
            dst[(size_t)x * hdr.components] = line->i32[x];
        rows_done[c]++;
    }
    cs.close();
    if (truncated) {
        shim_message(msg, "the codestream ends inside a tile");
        return PX_HTJ2K_SHIM_MALFORMED;
    }
    return PX_HTJ2K_SHIM_OK;
}

px_htj2k_shim_result shim_encode(const int32_t *samples, uint32_t width, uint32_t height,
                                 uint32_t components, uint32_t bit_depth, bool is_signed,
                                 px_htj2k_shim_write_fn write, void *ctx, char *msg)
{
    ojph::codestream cs;
    ojph::mem_outfile file;

    if (components < 1 || components > shim_components_max || bit_depth < 1 ||
        bit_depth > shim_bit_depth_max || width == 0 || height == 0) {
        shim_message(msg, "1 to 3 components of 1 to 16 bits are supported");
        return PX_HTJ2K_SHIM_UNSUPPORTED;
    }

    ojph::param_siz siz = cs.access_siz();
    siz.set_image_extent(ojph::point(width, height));
    siz.set_num_components(components);
    for (uint32_t c = 0; c < components; c++)
        siz.set_component(c, ojph::point(1, 1), bit_depth, is_signed);
    siz.set_image_offset(ojph::point(0, 0));
    siz.set_tile_size(ojph::size(width, height));
    siz.set_tile_offset(ojph::point(0, 0));

    ojph::param_cod cod = cs.access_cod();
    cod.set_num_decomposition(5);
    cod.set_block_dims(64, 64);
    cod.set_progression_order("RPCL");
    cod.set_color_transform(components == 3);
    cod.set_reversible(true);

    cs.set_planar(false);
    file.open();
    cs.write_headers(&file);

    ojph::ui32 c = 0;
    ojph::line_buf *line = cs.exchange(nullptr, c);
    size_t stride = (size_t)width * components;

    for (uint32_t y = 0; y < height; y++) {
        for (uint32_t k = 0; k < components; k++) {
            const int32_t *src = samples + (size_t)y * stride + c;

            for (uint32_t x = 0; x < width; x++)
                line->i32[x] = src[(size_t)x * components];
            line = cs.exchange(line, c);
        }
    }
    cs.flush();

    bool ok = write(ctx, file.get_data(), (size_t)file.tell());
    cs.close();
    if (!ok) {
        shim_message(msg, "no memory for the codestream");
        return PX_HTJ2K_SHIM_NOMEM;
    }
    return PX_HTJ2K_SHIM_OK;
}

} // namespace

extern "C" px_htj2k_shim_result px_htj2k_shim_decode(const uint8_t *bytes, size_t len,
                                                     px_htj2k_shim_alloc_fn alloc, void *ctx,
                                                     char msg[PX_HTJ2K_SHIM_MESSAGE_MAX])
{
    msg[0] = '\0';
    try {
        shim_configure();
        return shim_decode(bytes, len, alloc, ctx, msg);
    } catch (const std::bad_alloc &) {
        shim_message(msg, "out of memory");
        return PX_HTJ2K_SHIM_NOMEM;
    } catch (const std::exception &e) {
        shim_message(msg, shim_recorded(e.what()));
        return PX_HTJ2K_SHIM_MALFORMED;
    } catch (...) {
        shim_message(msg, "unknown failure");
        return PX_HTJ2K_SHIM_MALFORMED;
    }
}

extern "C" px_htj2k_shim_result px_htj2k_shim_encode(const int32_t *samples, uint32_t width,
                                                     uint32_t height, uint32_t components,
                                                     uint32_t bit_depth, bool is_signed,
                                                     px_htj2k_shim_write_fn write, void *ctx,
                                                     char msg[PX_HTJ2K_SHIM_MESSAGE_MAX])
{
    msg[0] = '\0';
    try {
        shim_configure();
        return shim_encode(samples, width, height, components, bit_depth, is_signed, write,
                           ctx, msg);
    } catch (const std::bad_alloc &) {
        shim_message(msg, "out of memory");
        return PX_HTJ2K_SHIM_NOMEM;
    } catch (const std::exception &e) {
        shim_message(msg, shim_recorded(e.what()));
        return PX_HTJ2K_SHIM_MALFORMED;
    } catch (...) {
        shim_message(msg, "unknown failure");
        return PX_HTJ2K_SHIM_MALFORMED;
    }
}
