/* Opening a checkpoint directory: dir/model.safetensors when present, else every shard named by
 * dir/model.safetensors.index.json, whose {"weight_map": {tensor: shard file}} must agree exactly
 * with the shards' headers (each listed tensor in its shard, each shard tensor listed). */
#include "io/safetensors.h"
#include "io/safetensors_internal.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/error.h"
#include "util/json_strict.h"

#define INDEX_MAX_BYTES ((off_t)100 << 20)

static char *join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    size_t k = a;
    if (a > 0 && dir[a - 1] != '/') p[k++] = '/';
    memcpy(p + k, name, b + 1);
    return p;
}

/* Reads a whole file into a NUL-terminated buffer. */
static plm_status read_all(char **out, size_t *len, const char *path, plm_error *err) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return plm_fail(err, PLM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > INDEX_MAX_BYTES) {
        close(fd);
        return plm_fail(err, PLM_ERR_IO, "%s: not a regular file of reasonable size", path);
    }
    char *buf = malloc((size_t)st.st_size + 1);
    if (!buf) {
        close(fd);
        return plm_fail(err, PLM_ERR_NOMEM, "%s: out of memory", path);
    }
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    if (got != (size_t)st.st_size) {
        free(buf);
        return plm_fail(err, PLM_ERR_IO, "%s: short read", path);
    }
    buf[got] = 0;
    *out = buf;
    *len = got;
    return PLM_OK;
}

/* A shard name must stay inside the directory: a plain file name. */
static int safe_shard_name(const char *s) {
    return s[0] && strchr(s, '/') == NULL && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

static plm_status open_sharded(plm_st_set *s, const char *dir, const char *ipath, plm_error *err) {
    char *text;
    size_t len = 0;
    plm_status st = read_all(&text, &len, ipath, err);
    if (st != PLM_OK) return st;
    size_t bad = 0;
    const char *why = NULL;
    cJSON *root = NULL;
    size_t nul = SIZE_MAX;
    if (!plm_json_check(text, len, &bad, &why, &nul) || nul != SIZE_MAX) {
        long line, col;
        plm_json_line_col(text, why ? bad : nul, &line, &col);
        free(text);
        if (!why)
            return plm_fail(err, PLM_ERR_FORMAT, "%s: line %ld, column %ld: a string holds \\u0000", ipath, line, col);
        return plm_fail(err, PLM_ERR_FORMAT, "%s: line %ld, column %ld: invalid JSON: %s", ipath, line, col, why);
    }
    root = cJSON_ParseWithLength(text, len);
    free(text);
    const cJSON *wm = root ? cJSON_GetObjectItemCaseSensitive(root, "weight_map") : NULL;
    const char **shards = NULL; /* distinct shard names, in order of first appearance */
    int *entry_shard = NULL;    /* per weight_map entry: index into shards */
    char *seen = NULL;
    int n_shards = 0, n_entries = 0;
    if (!root || !cJSON_IsObject(root)) {
        st = plm_fail(err, PLM_ERR_FORMAT, "%s: not a valid JSON object", ipath);
        goto done;
    }
    if (!cJSON_IsObject(wm)) {
        st = plm_fail(err, PLM_ERR_FORMAT, "%s: no \"weight_map\" object", ipath);
        goto done;
    }
    n_entries = cJSON_GetArraySize(wm);
    if (n_entries == 0) {
        st = plm_fail(err, PLM_ERR_FORMAT, "%s: weight_map is empty", ipath);
        goto done;
    }
    shards = malloc(sizeof *shards * (size_t)n_entries);
    entry_shard = malloc(sizeof *entry_shard * (size_t)n_entries);
    if (!shards || !entry_shard) {
        st = plm_fail(err, PLM_ERR_NOMEM, "%s: out of memory", ipath);
        goto done;
    }
    int k = 0;
    for (const cJSON *e = wm->child; e; e = e->next, k++) {
        if (!cJSON_IsString(e) || !e->valuestring || !safe_shard_name(e->valuestring)) {
            st = plm_fail(err, PLM_ERR_FORMAT, "%s: weight_map['%s'] is not a shard file name", ipath,
                          e->string ? e->string : "");
            goto done;
        }
        int j = 0;
        while (j < n_shards && strcmp(shards[j], e->valuestring) != 0) j++;
        if (j == n_shards) shards[n_shards++] = e->valuestring;
        entry_shard[k] = j;
    }
    /* shard j becomes file j of the set */
    for (int j = 0; j < n_shards; j++) {
        char *p = join(dir, shards[j]);
        if (!p) {
            st = plm_fail(err, PLM_ERR_NOMEM, "%s: out of memory", ipath);
            goto done;
        }
        st = plm_st_add_file(s, p, err);
        free(p);
        if (st != PLM_OK) {
            plm_fail_prefix(err, st, "%s: shard '%s'", ipath, shards[j]);
            goto done;
        }
    }
    if ((st = plm_st_finish(s, err)) != PLM_OK) goto done;
    seen = calloc((size_t)(s->n > 0 ? s->n : 1), 1);
    if (!seen) {
        st = plm_fail(err, PLM_ERR_NOMEM, "%s: out of memory", ipath);
        goto done;
    }
    k = 0;
    for (const cJSON *e = wm->child; e; e = e->next, k++) {
        const char *name = e->string ? e->string : "";
        int i = plm_st_find_index(s, name);
        if (i < 0) {
            st = plm_fail(err, PLM_ERR_FORMAT, "%s: tensor '%s' is listed in shard '%s' but absent from it",
                          ipath, name, shards[entry_shard[k]]);
            goto done;
        }
        if (s->t[i].file != entry_shard[k]) {
            st = plm_fail(err, PLM_ERR_FORMAT, "%s: tensor '%s' is listed in shard '%s' but found in %s",
                          ipath, name, shards[entry_shard[k]], s->files[s->t[i].file].path);
            goto done;
        }
        if (seen[i]) {
            st = plm_fail(err, PLM_ERR_FORMAT, "%s: tensor '%s' is listed twice", ipath, name);
            goto done;
        }
        seen[i] = 1;
    }
    for (int i = 0; i < s->n; i++)
        if (!seen[i]) {
            st = plm_fail(err, PLM_ERR_FORMAT, "%s: tensor '%s' is not listed in %s",
                          s->files[s->t[i].file].path, s->t[i].name, ipath);
            goto done;
        }
done:
    free(seen);
    free(shards);
    free(entry_shard);
    cJSON_Delete(root);
    return st;
}

plm_status plm_st_open_dir(plm_st_set **out, const char *dir, plm_error *err) {
    *out = NULL;
    struct stat sb;
    if (stat(dir, &sb) != 0) return plm_fail(err, PLM_ERR_IO, "%s: cannot open: %s", dir, strerror(errno));
    if (!S_ISDIR(sb.st_mode)) return plm_fail(err, PLM_ERR_IO, "%s: not a directory", dir);
    char *single = join(dir, "model.safetensors");
    char *index = join(dir, "model.safetensors.index.json");
    plm_st_set *s = NULL;
    plm_status st = (single && index) ? plm_st_set_new(&s, err)
                                      : plm_fail(err, PLM_ERR_NOMEM, "%s: out of memory", dir);
    if (st == PLM_OK) {
        if (stat(single, &sb) == 0) {
            if ((st = plm_st_add_file(s, single, err)) == PLM_OK) st = plm_st_finish(s, err);
        } else if (stat(index, &sb) == 0) {
            st = open_sharded(s, dir, index, err);
        } else {
            st = plm_fail(err, PLM_ERR_IO, "%s: no model.safetensors nor model.safetensors.index.json",
                          dir);
        }
    }
    free(single);
    free(index);
    if (st != PLM_OK) {
        plm_st_close(s);
        return st;
    }
    *out = s;
    return PLM_OK;
}
