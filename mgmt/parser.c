/* Incremental parser for the OpenVPN management protocol.
 *
 * Happy path: mgmt_parser_feed() finds each '\n' with memchr and hands the
 * line (without "\r\n") to mgmt_parser_line(). A line that is complete in
 * the input is parsed where it lies; only a line split across two feeds is
 * first gathered in p->line, so byte-at-a-time feeding produces the same
 * calls as feeding whole. ENV lines and reply lines are copied once into
 * their block buffer; single-line events are copied into p->line so their
 * fields can be NUL-terminated in place. Nothing is allocated per line.
 *
 * Failure modes: a line over max_line, an ENV block over max_env/max_block,
 * a reply over max_block/max_reply_rows, a malformed >CLIENT: header or an
 * interrupted ENV block give one MGMT_EV_PARSE_ERROR. A broken block is
 * dropped whole (its remaining lines are skipped silently up to its END)
 * and parsing resumes on the next line. Memory never exceeds the limits.
 */
#include <errno.h>
#include <string.h>

#include "mgmt/internal.h"
#include "mgmt/mgmt.h"

enum mgmt_pstate {
    MGMT_PS_NONE = 0,
    MGMT_PS_OPEN, /* collecting a block */
    MGMT_PS_SKIP, /* dropping a broken block up to its END */
};

/* A block buffer that grows on demand up to the max_block limit. */
struct mgmt_pbuf {
    char *d;
    size_t len;
    size_t cap;
};

struct mgmt_parser {
    struct mgmt_limits lim;
    mgmt_parser_event_cb cb;
    void *data;

    /* The current line when it spans feeds; also the scratch copy of a
     * single-line event. Capacity max_line + 2: one '\r' and a NUL. */
    char *line;
    size_t llen;
    bool discarding; /* inside an over-long line, waiting for '\n' */

    /* ENV block of a >CLIENT: or >UPDOWN: event. */
    enum mgmt_pstate env_state;
    enum mgmt_event_type env_type;
    uint64_t env_cid;
    uint32_t env_kid;
    const char *env_tag; /* "CLIENT" or "UPDOWN" (static) */
    size_t env_tag_len;
    bool env_has_text; /* CR_RESPONSE / UPDOWN: text at offset 0 */
    struct mgmt_pbuf env;
    size_t *env_offs; /* key, value offset pairs */
    size_t env_n;
    struct mgmt_env_var *vars;

    /* Multi-line reply. */
    enum mgmt_pstate reply_state;
    struct mgmt_pbuf reply;
    size_t *reply_offs;
    size_t reply_n;
    const char **lines;
};

void mgmt_limits_default(struct mgmt_limits *l)
{
    l->max_line = 4096;
    l->max_env = 512;
    l->max_block = 1024 * 1024;
    l->max_reply_rows = 65536;
}

const char *mgmt_env_get(const struct mgmt_env *env, const char *key)
{
    for (size_t i = 0; i < env->n; i++) {
        if (strcmp(env->vars[i].key, key) == 0) {
            return env->vars[i].value;
        }
    }
    return NULL;
}

int mgmt_parser_new(const struct mgmt_limits *limits,
                    mgmt_parser_event_cb cb,
                    void *data,
                    struct mgmt_parser **ret)
{
    struct mgmt_limits def;
    mgmt_limits_default(&def);
    struct mgmt_parser *p = ovha_calloc(1, sizeof(*p));
    if (p == NULL) {
        return -ENOMEM;
    }
    p->lim = def;
    if (limits != NULL) {
        p->lim.max_line = limits->max_line ? limits->max_line : def.max_line;
        p->lim.max_env = limits->max_env ? limits->max_env : def.max_env;
        p->lim.max_block =
            limits->max_block ? limits->max_block : def.max_block;
        p->lim.max_reply_rows = limits->max_reply_rows ? limits->max_reply_rows
                                                       : def.max_reply_rows;
    }
    p->cb = cb;
    p->data = data;
    p->line = ovha_malloc(p->lim.max_line + 2);
    if (p->line == NULL) {
        ovha_free(p);
        return -ENOMEM;
    }
    *ret = p;
    return 0;
}

void mgmt_parser_free(struct mgmt_parser *p)
{
    if (p == NULL) {
        return;
    }
    ovha_free(p->line);
    ovha_free(p->env.d);
    ovha_free(p->env_offs);
    ovha_free(p->vars);
    ovha_free(p->reply.d);
    ovha_free(p->reply_offs);
    ovha_free(p->lines);
    ovha_free(p);
}

void mgmt_parser_reset(struct mgmt_parser *p)
{
    p->llen = 0;
    p->discarding = false;
    p->env_state = MGMT_PS_NONE;
    p->reply_state = MGMT_PS_NONE;
}

bool mgmt_parser_skipping_reply(const struct mgmt_parser *p)
{
    return p->reply_state == MGMT_PS_SKIP;
}

/* ---- small helpers ------------------------------------------------------ */

/* Decimal digits only, no sign, value <= max. */
static bool mgmt_parser_num(const char *s,
                            size_t n,
                            uint64_t max,
                            uint64_t *ret)
{
    uint64_t v = 0;
    if (n == 0 || n > 20) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned d = (unsigned)(unsigned char)s[i] - '0';
        if (d > 9 || d > max || v > (max - d) / 10) {
            return false;
        }
        v = v * 10 + d;
    }
    *ret = v;
    return true;
}

/* Splits the next comma-separated field off [*s, end). The last field
 * takes the rest of the line. */
static void mgmt_parser_field(const char **s,
                              const char *end,
                              const char **ret_f,
                              size_t *ret_n)
{
    const char *c = memchr(*s, ',', (size_t)(end - *s));
    const char *fe = c != NULL ? c : end;
    *ret_f = *s;
    *ret_n = (size_t)(fe - *s);
    *s = c != NULL ? c + 1 : end;
}

/* Grows b so that extra more bytes fit, never beyond max bytes in all.
 * Returns 0, OVHA_ELIMIT or -ENOMEM. */
static int mgmt_parser_pbuf_room(struct mgmt_pbuf *b, size_t extra, size_t max)
{
    size_t need = b->len + extra;
    if (need > max) {
        return OVHA_ELIMIT;
    }
    if (need <= b->cap) {
        return 0;
    }
    size_t cap = b->cap != 0 ? b->cap : 4096;
    while (cap < need) {
        cap *= 2;
    }
    if (cap > max) {
        cap = max;
    }
    char *d = ovha_realloc(b->d, cap);
    if (d == NULL) {
        return -ENOMEM;
    }
    b->d = d;
    b->cap = cap;
    return 0;
}

/* The offsets arrays are sized once to their limit on first use: they are
 * small next to the block buffers and this keeps the per-line path short.
 * Returns 0 or -ENOMEM. */
static int mgmt_parser_offs_alloc(size_t **offs, size_t max)
{
    if (*offs == NULL) {
        *offs = ovha_malloc(max * sizeof(**offs));
    }
    return *offs != NULL ? 0 : -ENOMEM;
}

static const char *mgmt_parser_errtext(int rv, const char *limit_text)
{
    return rv == -ENOMEM ? "out of memory" : limit_text;
}

static void mgmt_parser_emit(struct mgmt_parser *p, struct mgmt_event *ev)
{
    p->cb(ev, p->data);
}

static void mgmt_parser_error(struct mgmt_parser *p,
                              int error,
                              const char *tag,
                              const char *text)
{
    struct mgmt_event ev = {
        .type = MGMT_EV_PARSE_ERROR,
        .error = error,
        .tag = tag,
        .text = text,
    };
    mgmt_parser_emit(p, &ev);
}

/* Copies the line into p->line (unless it is already there) and
 * NUL-terminates it so fields can be cut in place. */
static char *mgmt_parser_own(struct mgmt_parser *p, const char *s, size_t n)
{
    if (s != p->line) {
        /* s may point into p->line when the line was gathered there. */
        memmove(p->line, s, n);
    }
    p->line[n] = '\0';
    return p->line;
}

/* ---- ENV blocks ----------------------------------------------------------
 */

static void mgmt_parser_env_open(struct mgmt_parser *p,
                                 enum mgmt_event_type type,
                                 const char *tag,
                                 uint64_t cid,
                                 uint32_t kid,
                                 const char *text,
                                 size_t tn)
{
    p->env_state = MGMT_PS_OPEN;
    p->env_type = type;
    p->env_tag = tag;
    p->env_tag_len = strlen(tag);
    p->env_cid = cid;
    p->env_kid = kid;
    p->env_n = 0;
    p->env.len = 0;
    p->env_has_text = text != NULL;
    if (text != NULL) {
        int rv = mgmt_parser_pbuf_room(&p->env, tn + 1, p->lim.max_block);
        if (rv != 0) {
            p->env_state = MGMT_PS_SKIP;
            mgmt_parser_error(p, rv, tag,
                              mgmt_parser_errtext(rv, "ENV block too big"));
            return;
        }
        memcpy(p->env.d, text, tn);
        p->env.d[tn] = '\0';
        p->env.len = tn + 1;
    }
}

/* Adds one "key=value" (the value may hold '=' and ','). */
static void mgmt_parser_env_add(struct mgmt_parser *p, const char *s, size_t n)
{
    int rv = p->env_n >= p->lim.max_env ? OVHA_ELIMIT : 0;
    if (rv == 0) {
        rv = mgmt_parser_offs_alloc(&p->env_offs, 2 * p->lim.max_env);
    }
    /* One extra byte: a key without '=' still gets an empty value. */
    if (rv == 0) {
        rv = mgmt_parser_pbuf_room(&p->env, n + 2, p->lim.max_block);
    }
    if (rv != 0) {
        p->env_state = MGMT_PS_SKIP;
        mgmt_parser_error(p, rv, p->env_tag,
                          mgmt_parser_errtext(rv, "ENV block over limit"));
        return;
    }
    char *d = p->env.d + p->env.len;
    memcpy(d, s, n);
    size_t koff = p->env.len;
    size_t voff;
    char *eq = memchr(d, '=', n);
    if (eq != NULL) {
        *eq = '\0';
        d[n] = '\0';
        voff = koff + (size_t)(eq - d) + 1;
        p->env.len += n + 1;
    } else {
        d[n] = '\0';
        d[n + 1] = '\0';
        voff = koff + n + 1;
        p->env.len += n + 2;
    }
    p->env_offs[2 * p->env_n] = koff;
    p->env_offs[2 * p->env_n + 1] = voff;
    p->env_n++;
}

static void mgmt_parser_env_end(struct mgmt_parser *p)
{
    p->env_state = MGMT_PS_NONE;
    if (p->env_n > 0 && p->vars == NULL) {
        p->vars = ovha_malloc(p->lim.max_env * sizeof(*p->vars));
        if (p->vars == NULL) {
            mgmt_parser_error(p, -ENOMEM, p->env_tag, "out of memory");
            return;
        }
    }
    for (size_t i = 0; i < p->env_n; i++) {
        p->vars[i].key = p->env.d + p->env_offs[2 * i];
        p->vars[i].value = p->env.d + p->env_offs[2 * i + 1];
    }
    struct mgmt_event ev = {
        .type = p->env_type,
        .cid = p->env_cid,
        .kid = p->env_kid,
        .env = { .vars = p->vars, .n = p->env_n },
        .text = p->env_has_text ? p->env.d : NULL,
    };
    mgmt_parser_emit(p, &ev);
}

/* Handles a line while an ENV block is open or skipped. Returns true when
 * the line belonged to the block. */
static bool mgmt_parser_env_line(struct mgmt_parser *p, const char *s, size_t n)
{
    size_t tl = p->env_tag_len;
    if (n >= tl + 6 && s[0] == '>' && memcmp(s + 1, p->env_tag, tl) == 0 &&
        memcmp(s + 1 + tl, ":ENV,", 5) == 0) {
        const char *v = s + tl + 6;
        size_t vn = n - tl - 6;
        if (vn == 3 && memcmp(v, "END", 3) == 0) {
            if (p->env_state == MGMT_PS_OPEN) {
                mgmt_parser_env_end(p);
            }
            p->env_state = MGMT_PS_NONE;
        } else if (p->env_state == MGMT_PS_OPEN) {
            mgmt_parser_env_add(p, v, vn);
        }
        return true;
    }
    if (p->env_state == MGMT_PS_OPEN) {
        mgmt_parser_error(p, OVHA_EPROTO, p->env_tag, "ENV block interrupted");
    }
    p->env_state = MGMT_PS_NONE;
    return false;
}

/* ---- >CLIENT: ----------------------------------------------------------- */

static void mgmt_parser_client_bad(struct mgmt_parser *p, bool has_env)
{
    mgmt_parser_error(p, OVHA_EPROTO, "CLIENT", "malformed >CLIENT: header");
    if (has_env) {
        /* Drop the ENV block that follows the broken header. */
        p->env_state = MGMT_PS_SKIP;
        p->env_tag = "CLIENT";
        p->env_tag_len = 6;
    }
}

static void mgmt_parser_client_address(struct mgmt_parser *p,
                                       const char *s,
                                       const char *end)
{
    const char *f;
    size_t fn;
    uint64_t cid, pri;
    mgmt_parser_field(&s, end, &f, &fn);
    if (!mgmt_parser_num(f, fn, UINT64_MAX, &cid)) {
        mgmt_parser_client_bad(p, false);
        return;
    }
    const char *addr = s;
    const char *c = memchr(s, ',', (size_t)(end - s));
    if (c == NULL || c == addr ||
        !mgmt_parser_num(c + 1, (size_t)(end - c - 1), 1, &pri)) {
        mgmt_parser_client_bad(p, false);
        return;
    }
    char *own = mgmt_parser_own(p, addr, (size_t)(c - addr));
    struct mgmt_event ev = {
        .type = MGMT_EV_CLIENT_ADDRESS,
        .cid = cid,
        .addr = own,
        .primary = pri == 1,
    };
    mgmt_parser_emit(p, &ev);
}

/* s..end: the text after ">CLIENT:". Returns false for a subtype we do not
 * model (the caller reports it as ASYNC_OTHER). */
static bool mgmt_parser_client(struct mgmt_parser *p,
                               const char *s,
                               const char *end)
{
    const char *sub;
    size_t sn;
    mgmt_parser_field(&s, end, &sub, &sn);
    enum mgmt_event_type type;
    bool has_kid = false;
    bool has_text = false;
    if (sn == 7 && memcmp(sub, "CONNECT", 7) == 0) {
        type = MGMT_EV_CLIENT_CONNECT;
        has_kid = true;
    } else if (sn == 6 && memcmp(sub, "REAUTH", 6) == 0) {
        type = MGMT_EV_CLIENT_REAUTH;
        has_kid = true;
    } else if (sn == 11 && memcmp(sub, "ESTABLISHED", 11) == 0) {
        type = MGMT_EV_CLIENT_ESTABLISHED;
    } else if (sn == 10 && memcmp(sub, "DISCONNECT", 10) == 0) {
        type = MGMT_EV_CLIENT_DISCONNECT;
    } else if (sn == 11 && memcmp(sub, "CR_RESPONSE", 11) == 0) {
        type = MGMT_EV_CLIENT_CR_RESPONSE;
        has_kid = true;
        has_text = true;
    } else if (sn == 7 && memcmp(sub, "ADDRESS", 7) == 0) {
        mgmt_parser_client_address(p, s, end);
        return true;
    } else if (sn == 3 && memcmp(sub, "ENV", 3) == 0) {
        /* An ENV line with no block open: drop it and its block. */
        mgmt_parser_error(p, OVHA_EPROTO, "CLIENT", "ENV outside a block");
        bool is_end = end - s == 3 && memcmp(s, "END", 3) == 0;
        p->env_state = is_end ? MGMT_PS_NONE : MGMT_PS_SKIP;
        p->env_tag = "CLIENT";
        p->env_tag_len = 6;
        return true;
    } else {
        return false;
    }
    const char *f;
    size_t fn;
    uint64_t cid, kid = 0;
    mgmt_parser_field(&s, end, &f, &fn);
    if (!mgmt_parser_num(f, fn, UINT64_MAX, &cid)) {
        mgmt_parser_client_bad(p, true);
        return true;
    }
    if (has_kid) {
        if (has_text) {
            mgmt_parser_field(&s, end, &f, &fn);
        } else {
            f = s;
            fn = (size_t)(end - s);
            s = end;
        }
        if (!mgmt_parser_num(f, fn, UINT32_MAX, &kid)) {
            mgmt_parser_client_bad(p, true);
            return true;
        }
    } else if (s != end) {
        mgmt_parser_client_bad(p, true);
        return true;
    }
    mgmt_parser_env_open(p, type, "CLIENT", cid, (uint32_t)kid,
                         has_text ? s : NULL, (size_t)(end - s));
    return true;
}

/* ---- asynchronous '>' lines --------------------------------------------- */

struct mgmt_parser_tag {
    const char *name;
    size_t len;
    enum mgmt_event_type type;
};

#define MGMT_TAG(s, t)      \
    {                       \
        s, sizeof(s) - 1, t \
    }
static const struct mgmt_parser_tag mgmt_parser_tags[] = {
    MGMT_TAG("STATE", MGMT_EV_STATE),
    MGMT_TAG("LOG", MGMT_EV_LOG),
    MGMT_TAG("ECHO", MGMT_EV_ECHO),
    MGMT_TAG("HOLD", MGMT_EV_HOLD),
    MGMT_TAG("INFO", MGMT_EV_INFO),
    MGMT_TAG("INFOMSG", MGMT_EV_INFOMSG),
    MGMT_TAG("PASSWORD", MGMT_EV_PASSWORD),
    MGMT_TAG("NEED-OK", MGMT_EV_NEED_OK),
    MGMT_TAG("NEED-STR", MGMT_EV_NEED_STR),
    MGMT_TAG("FATAL", MGMT_EV_FATAL),
    MGMT_TAG("NOTIFY", MGMT_EV_NOTIFY),
};

static void mgmt_parser_bytecount(struct mgmt_parser *p,
                                  bool cli,
                                  const char *s,
                                  const char *end)
{
    const char *f;
    size_t fn;
    uint64_t cid = 0, in, out;
    if (cli) {
        mgmt_parser_field(&s, end, &f, &fn);
        if (!mgmt_parser_num(f, fn, UINT64_MAX, &cid)) {
            goto bad;
        }
    }
    mgmt_parser_field(&s, end, &f, &fn);
    if (!mgmt_parser_num(f, fn, UINT64_MAX, &in) ||
        !mgmt_parser_num(s, (size_t)(end - s), UINT64_MAX, &out)) {
        goto bad;
    }
    struct mgmt_event ev = {
        .type = cli ? MGMT_EV_BYTECOUNT_CLI : MGMT_EV_BYTECOUNT,
        .cid = cid,
        .bytes_in = in,
        .bytes_out = out,
    };
    mgmt_parser_emit(p, &ev);
    return;
bad:
    mgmt_parser_error(p, OVHA_EPROTO, cli ? "BYTECOUNT_CLI" : "BYTECOUNT",
                      "malformed byte count");
}

static void mgmt_parser_text_event(struct mgmt_parser *p,
                                   enum mgmt_event_type type,
                                   size_t tn,
                                   const char *s,
                                   size_t n)
{
    /* Own the whole line so both tag and text are NUL-terminated. */
    char *own = mgmt_parser_own(p, s, n);
    char *text = own + 1 + tn;
    own[1 + tn] = '\0';
    struct mgmt_event ev = {
        .type = type,
        .tag = own + 1,
        .text = 1 + tn < n ? text + 1 : text,
    };
    mgmt_parser_emit(p, &ev);
}

static void mgmt_parser_async(struct mgmt_parser *p, const char *s, size_t n)
{
    const char *end = s + n;
    const char *colon = memchr(s + 1, ':', n - 1);
    size_t tn = colon != NULL ? (size_t)(colon - s - 1) : n - 1;
    const char *tag = s + 1;
    const char *text = colon != NULL ? colon + 1 : end;

    if (colon != NULL && tn == 6 && memcmp(tag, "CLIENT", 6) == 0) {
        if (!mgmt_parser_client(p, text, end)) {
            mgmt_parser_text_event(p, MGMT_EV_ASYNC_OTHER, tn, s, n);
        }
        return;
    }
    if (colon != NULL && tn == 13 && memcmp(tag, "BYTECOUNT_CLI", 13) == 0) {
        mgmt_parser_bytecount(p, true, text, end);
        return;
    }
    if (colon != NULL && tn == 9 && memcmp(tag, "BYTECOUNT", 9) == 0) {
        mgmt_parser_bytecount(p, false, text, end);
        return;
    }
    if (colon != NULL && tn == 6 && memcmp(tag, "UPDOWN", 6) == 0) {
        if (end - text >= 4 && memcmp(text, "ENV,", 4) == 0) {
            mgmt_parser_error(p, OVHA_EPROTO, "UPDOWN", "ENV outside a block");
            bool is_end = end - text == 7 && memcmp(text + 4, "END", 3) == 0;
            p->env_state = is_end ? MGMT_PS_NONE : MGMT_PS_SKIP;
            p->env_tag = "UPDOWN";
            p->env_tag_len = 6;
            return;
        }
        mgmt_parser_env_open(p, MGMT_EV_UPDOWN, "UPDOWN", 0, 0, text,
                             (size_t)(end - text));
        return;
    }
    enum mgmt_event_type type = MGMT_EV_ASYNC_OTHER;
    if (colon != NULL) {
        for (size_t i = 0;
             i < sizeof(mgmt_parser_tags) / sizeof(mgmt_parser_tags[0]); i++) {
            if (mgmt_parser_tags[i].len == tn &&
                memcmp(mgmt_parser_tags[i].name, tag, tn) == 0) {
                type = mgmt_parser_tags[i].type;
                break;
            }
        }
    }
    mgmt_parser_text_event(p, type, tn, s, n);
}

/* ---- replies ------------------------------------------------------------ */

static void mgmt_parser_reply_add(struct mgmt_parser *p,
                                  const char *s,
                                  size_t n)
{
    int rv = p->reply_n >= p->lim.max_reply_rows ? OVHA_ELIMIT : 0;
    if (rv == 0) {
        rv = mgmt_parser_offs_alloc(&p->reply_offs, p->lim.max_reply_rows);
    }
    if (rv == 0) {
        rv = mgmt_parser_pbuf_room(&p->reply, n + 1, p->lim.max_block);
    }
    if (rv != 0) {
        /* State first: the callback asks whether the reply is skipped. */
        p->reply_state = MGMT_PS_SKIP;
        mgmt_parser_error(p, rv, MGMT_TAG_REPLY,
                          mgmt_parser_errtext(rv, "reply over limit"));
        return;
    }
    memcpy(p->reply.d + p->reply.len, s, n);
    p->reply.d[p->reply.len + n] = '\0';
    p->reply_offs[p->reply_n++] = p->reply.len;
    p->reply.len += n + 1;
}

static void mgmt_parser_reply_end(struct mgmt_parser *p)
{
    p->reply_state = MGMT_PS_NONE;
    if (p->reply_n > 0 && p->lines == NULL) {
        p->lines = ovha_malloc(p->lim.max_reply_rows * sizeof(*p->lines));
        if (p->lines == NULL) {
            mgmt_parser_error(p, -ENOMEM, MGMT_TAG_REPLY, "out of memory");
            return;
        }
    }
    for (size_t i = 0; i < p->reply_n; i++) {
        p->lines[i] = p->reply.d + p->reply_offs[i];
    }
    struct mgmt_event ev = {
        .type = MGMT_EV_REPLY_BLOCK,
        .lines = p->lines,
        .nlines = p->reply_n,
    };
    mgmt_parser_emit(p, &ev);
}

static void mgmt_parser_status_line(struct mgmt_parser *p,
                                    enum mgmt_event_type type,
                                    size_t skip,
                                    const char *s,
                                    size_t n)
{
    if (skip < n && s[skip] == ' ') {
        skip++;
    }
    char *own = mgmt_parser_own(p, s, n);
    struct mgmt_event ev = { .type = type, .text = own + skip };
    mgmt_parser_emit(p, &ev);
}

static void mgmt_parser_reply(struct mgmt_parser *p, const char *s, size_t n)
{
    bool is_end = n == 3 && memcmp(s, "END", 3) == 0;
    if (p->reply_state != MGMT_PS_NONE) {
        if (is_end) {
            if (p->reply_state == MGMT_PS_OPEN) {
                mgmt_parser_reply_end(p);
            }
            p->reply_state = MGMT_PS_NONE;
        } else if (p->reply_state == MGMT_PS_OPEN) {
            mgmt_parser_reply_add(p, s, n);
        }
        return;
    }
    if (n >= 8 && memcmp(s, "SUCCESS:", 8) == 0) {
        mgmt_parser_status_line(p, MGMT_EV_REPLY_SUCCESS, 8, s, n);
        return;
    }
    if (n >= 6 && memcmp(s, "ERROR:", 6) == 0) {
        mgmt_parser_status_line(p, MGMT_EV_REPLY_ERROR, 6, s, n);
        return;
    }
    if (n == 0) {
        return; /* a stray empty line answers nothing */
    }
    p->reply_state = MGMT_PS_OPEN;
    p->reply_n = 0;
    p->reply.len = 0;
    if (is_end) {
        mgmt_parser_reply_end(p);
        return;
    }
    mgmt_parser_reply_add(p, s, n);
}

/* ---- lines -------------------------------------------------------------- */

/* An over-long line: what it breaks depends on where it falls. */
static void mgmt_parser_overlong(struct mgmt_parser *p, char first)
{
    if (p->env_state == MGMT_PS_OPEN) {
        p->env_state = MGMT_PS_SKIP;
        mgmt_parser_error(p, OVHA_ELIMIT, p->env_tag, "line too long");
        return;
    }
    if (p->env_state == MGMT_PS_SKIP) {
        return; /* part of a block already reported */
    }
    if (first == '>') {
        mgmt_parser_error(p, OVHA_ELIMIT, NULL, "line too long");
        return;
    }
    if (p->reply_state == MGMT_PS_SKIP) {
        return;
    }
    /* State first: the callback asks whether the reply is being skipped. */
    if (p->reply_state == MGMT_PS_OPEN) {
        p->reply_state = MGMT_PS_SKIP;
    }
    mgmt_parser_error(p, OVHA_ELIMIT, MGMT_TAG_REPLY, "line too long");
}

/* One complete line, "\r\n" already removed, n <= max_line. */
static void mgmt_parser_line(struct mgmt_parser *p, const char *s, size_t n)
{
    if (p->env_state != MGMT_PS_NONE && mgmt_parser_env_line(p, s, n)) {
        return;
    }
    if (n > 0 && s[0] == '>') {
        mgmt_parser_async(p, s, n);
        return;
    }
    mgmt_parser_reply(p, s, n);
}

static void mgmt_parser_line_end(struct mgmt_parser *p, const char *s, size_t n)
{
    if (n > 0 && s[n - 1] == '\r') {
        n--;
    }
    if (n > p->lim.max_line) {
        mgmt_parser_overlong(p, s[0]);
        return;
    }
    mgmt_parser_line(p, s, n);
}

/* Bytes of a line whose '\n' has not arrived yet. */
static void mgmt_parser_partial(struct mgmt_parser *p, const char *s, size_t n)
{
    if (p->discarding) {
        return;
    }
    /* max_line + 1: the last byte may still turn out to be the '\r'. */
    if (p->llen + n > p->lim.max_line + 1) {
        mgmt_parser_overlong(p, p->llen > 0 ? p->line[0] : s[0]);
        p->discarding = true;
        p->llen = 0;
        return;
    }
    memcpy(p->line + p->llen, s, n);
    p->llen += n;
}

void mgmt_parser_feed(struct mgmt_parser *p, const char *bytes, size_t n)
{
    const char *s = bytes;
    const char *end = bytes + n;
    while (s < end) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        if (nl == NULL) {
            mgmt_parser_partial(p, s, (size_t)(end - s));
            return;
        }
        size_t k = (size_t)(nl - s);
        if (p->discarding) {
            p->discarding = false;
        } else if (p->llen == 0) {
            mgmt_parser_line_end(p, s, k);
        } else if (p->llen + k > p->lim.max_line + 1) {
            char first = p->line[0];
            p->llen = 0;
            mgmt_parser_overlong(p, first);
        } else {
            memcpy(p->line + p->llen, s, k);
            size_t len = p->llen + k;
            p->llen = 0;
            mgmt_parser_line_end(p, p->line, len);
        }
        s = nl + 1;
    }
}
