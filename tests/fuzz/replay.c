/*
 * replay.c - runs a fuzz target over every file of a corpus directory (and
 * over files named directly), so that stored corpora and every crash once
 * found are replayed by the ordinary test suite, with or without libFuzzer.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    uint8_t *data = NULL;
    long size;
    int rc = -1;

    if (f == NULL)
        return -1;
    if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0)
        goto done;
    data = malloc(size > 0 ? (size_t)size : 1);
    if (data == NULL || fread(data, 1, (size_t)size, f) != (size_t)size)
        goto done;
    LLVMFuzzerTestOneInput(data, (size_t)size);
    rc = 0;

done:
    free(data);
    fclose(f);
    return rc;
}

static int replay_path(const char *path, unsigned *count)
{
    struct stat st;
    DIR *dir;
    struct dirent *ent;
    char child[4096];
    int rc = 0;

    if (stat(path, &st) != 0) {
        fprintf(stderr, "replay: cannot stat %s\n", path);
        return -1;
    }
    if (!S_ISDIR(st.st_mode)) {
        (*count)++;
        return replay_file(path);
    }

    dir = opendir(path);
    if (dir == NULL)
        return -1;
    while ((ent = readdir(dir)) != NULL) {
        if (ent->d_name[0] == '.')
            continue;
        snprintf(child, sizeof child, "%s/%s", path, ent->d_name);
        if (replay_path(child, count) != 0)
            rc = -1;
    }
    closedir(dir);
    return rc;
}

int main(int argc, char **argv)
{
    unsigned count = 0;
    int rc = 0;

    for (int i = 1; i < argc; i++) {
        if (replay_path(argv[i], &count) != 0)
            rc = 1;
    }
    printf("replayed %u inputs\n", count);
    return rc;
}
