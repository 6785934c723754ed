/*
 * config.h - the cloudpacs configuration: one INI-style file, overridden by
 * the environment.
 *
 *   # cloudpacs.conf
 *   [dicom]
 *   ae_title = CLOUDPACS
 *   port = 11112
 *
 * Every key can be overridden by CLOUDPACS_<SECTION>_<KEY> in upper case
 * (CLOUDPACS_DICOM_PORT). The common keys also answer to a short name:
 *
 *   CLOUDPACS_DATA_DIR      [core]  data_dir
 *   CLOUDPACS_HTTP_PORT     [http]  port
 *   CLOUDPACS_DICOM_PORT    [dicom] port
 *   CLOUDPACS_AE_TITLE      [dicom] ae_title
 *   CLOUDPACS_REDIS_URL     [redis] url
 *   CLOUDPACS_DATABASE_URL  [index] url
 *   CLOUDPACS_LOG_LEVEL     [core]  log_level
 *
 * The long form wins over the short form, and both over the file. Defaults
 * belong to the code that reads a key, which passes them to the getters.
 */
#ifndef CP_CORE_CONFIG_H
#define CP_CORE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

typedef struct cp_config cp_config;

/* An empty configuration (environment overrides still apply). NULL on OOM. */
cp_config *cp_config_create(void);

/*
 * Reads `path` into a new configuration. A missing file is an error here;
 * callers that treat it as optional check for it first. On a syntax error,
 * err names the line (as its offset) and what was wrong.
 */
cp_status cp_config_load(const char *path, cp_config **out, cp_error *err);

/* Parses configuration text of `len` bytes (for tests and embedded defaults). */
cp_status cp_config_parse(const char *text, size_t len, cp_config **out, cp_error *err);

void cp_config_destroy(cp_config *cfg);

/* Sets or replaces a key; the strings are copied. */
cp_status cp_config_set(cp_config *cfg, const char *section, const char *key,
                        const char *value);

/*
 * The value of section.key after environment overrides, or `fallback` when
 * it is set nowhere. The returned string belongs to cfg or to the environment
 * and is valid until the next change to either.
 */
const char *cp_config_get(const cp_config *cfg, const char *section, const char *key,
                          const char *fallback);

/* An integer in [min, max]; CP_ERR_CONFIG with a detail if it is not one. */
cp_status cp_config_get_int(const cp_config *cfg, const char *section, const char *key,
                            int64_t fallback, int64_t min, int64_t max, int64_t *out,
                            cp_error *err);

/* true/false, yes/no, on/off, 1/0; CP_ERR_CONFIG otherwise. */
cp_status cp_config_get_bool(const cp_config *cfg, const char *section, const char *key,
                             bool fallback, bool *out, cp_error *err);

/*
 * Added for the DICOM service: the name of the index-th distinct section
 * of the file, in the order they first appear, or NULL past the last. Lets
 * a reader find sections named by the operator ([ae.MODALITY1]). Sections
 * that only the environment sets are not listed.
 */
const char *cp_config_section_at(const cp_config *cfg, size_t index);

#endif
