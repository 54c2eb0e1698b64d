/*
 * podwire-cni: the compiled CNI shim. A pure transport to the podwire agent,
 * behaving exactly like the Python shim (podwire/frontends/cni/shim.py), but
 * starting in about half a millisecond instead of 25-70 ms.
 *
 * Wire contract (docs/cni.md, "The shim and the agent"):
 *   socket  = stdin config's top-level "agentSocket" string, else env
 *             PODWIRE_AGENT_SOCKET, else /run/podwire/agent.sock
 *   request = POST /v1/cni on that unix socket, X-CNI-Encoding: base64 and
 *             one X-CNI-* header per CNI variable that is set (base64 of its
 *             bytes), body = stdin unchanged
 *   answer  = the body goes to stdout unchanged, exit code = X-CNI-Exit
 * The shim answers by itself only VERSION, CNI error 7 for an agentSocket
 * that is not a non-empty string or a stdin over the agent's limit (1 MiB), and, when the agent cannot be reached or answers garbage, CNI
 * error 11 (try again later) or, if stdin cannot be a network config at all,
 * error 6 (decode failure: no retry can succeed; the agent would say 6 too).
 *
 * No dependencies beyond libc: gcc -O2 -Wall -Wextra -Werror.
 */
#define _GNU_SOURCE /* memmem */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#define DEFAULT_SOCKET "/run/podwire/agent.sock"
#define DEFAULT_CNI_VERSION "1.1.0"
#define VERSION_ANSWER                                                                        \
    "{\"cniVersion\": \"1.1.0\", \"supportedVersions\": [\"0.3.0\", \"0.3.1\", \"0.4.0\", " \
    "\"1.0.0\", \"1.1.0\"]}"
/* A generous bound: ADD on OVN waits for ovn-controller to bind the port.
 * PODWIRE_CNI_TIMEOUT (seconds) overrides it, as for the Python shim. */
#define IO_TIMEOUT_SECONDS 300.0
#define MAX_DEPTH 512
/* The agent's limit on stdin (podwire/frontends/cni/validate.py MAX_CONFIG_BYTES). */
#define MAX_STDIN (1 << 20)

struct buf {
    char *data;
    size_t len, cap;
};

static void buf_add(struct buf *b, const void *data, size_t len)
{
    if (b->len + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + len + 1)
            cap *= 2;
        b->data = realloc(b->data, cap);
        if (b->data == NULL) {
            fputs("podwire-cni: out of memory\n", stderr);
            exit(1);
        }
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
}

static void buf_str(struct buf *b, const char *s) { buf_add(b, s, strlen(s)); }

/* ---- The config scanner: a strict JSON reader that keeps two top-level
 * strings. Invalid JSON means "no config" (the agent then answers error 6).
 * A config is a JSON object in UTF-8 (RFC 8259), a leading BOM allowed: what
 * the Python shim's _config() accepts. */

#define UTF8_BOM "\xef\xbb\xbf"

/* Python's UTF-8 decoder with "surrogatepass": no overlong forms, nothing
 * above U+10FFFF, encoded surrogates (ED A0..BF xx) accepted. */
static int utf8_valid(const unsigned char *p, size_t len)
{
    const unsigned char *end = p + len;
    while (p < end) {
        unsigned c = *p++;
        int more;
        unsigned lo = 0x80, hi = 0xbf;
        if (c < 0x80)
            continue;
        if (c >= 0xc2 && c <= 0xdf)
            more = 1;
        else if (c >= 0xe0 && c <= 0xef) {
            more = 2;
            if (c == 0xe0)
                lo = 0xa0;
        } else if (c >= 0xf0 && c <= 0xf4) {
            more = 3;
            if (c == 0xf0)
                lo = 0x90;
            else if (c == 0xf4)
                hi = 0x8f;
        } else
            return 0;
        if (end - p < more || p[0] < lo || p[0] > hi)
            return 0;
        for (int i = 1; i < more; i++)
            if ((p[i] & 0xc0) != 0x80)
                return 0;
        p += more;
    }
    return 1;
}

struct scan {
    const unsigned char *p, *end;
};

static void skip_ws(struct scan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

static int hex4(const unsigned char *p, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned c = p[i], d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
            d = (c | 0x20) - 'a' + 10;
        else
            return -1;
        v = v * 16 + d;
    }
    *out = v;
    return 0;
}

static size_t put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xc0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Reads a string at s->p (which is '"'). With out != NULL, stores the decoded
 * UTF-8 there (the decoded form is never longer than the raw form) and its
 * length in *outlen. Returns -1 on a malformed string. */
static int scan_string(struct scan *s, char *out, size_t *outlen)
{
    size_t n = 0;
    s->p++;
    while (s->p < s->end) {
        unsigned c = *s->p++;
        if (c == '"') {
            if (outlen)
                *outlen = n;
            return 0;
        }
        if (c < 0x20)
            return -1;
        if (c != '\\') {
            if (out)
                out[n] = (char)c;
            n++;
            continue;
        }
        if (s->p >= s->end)
            return -1;
        c = *s->p++;
        const char *simple = strchr("\"\\/bfnrt", (int)c);
        if (c && simple) {
            static const char decoded[] = "\"\\/\b\f\n\r\t";
            if (out)
                out[n] = decoded[simple - "\"\\/bfnrt"];
            n++;
            continue;
        }
        if (c != 'u' || s->end - s->p < 4)
            return -1;
        unsigned cp, lo;
        if (hex4(s->p, &cp))
            return -1;
        s->p += 4;
        if (cp >= 0xd800 && cp < 0xdc00 && s->end - s->p >= 6 && s->p[0] == '\\' &&
            s->p[1] == 'u' && hex4(s->p + 2, &lo) == 0 && lo >= 0xdc00 && lo < 0xe000) {
            cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            s->p += 6;
        }
        char tmp[4];
        size_t k = put_utf8(tmp, cp);
        if (out)
            memcpy(out + n, tmp, k);
        n += k;
    }
    return -1;
}

static int scan_literal(struct scan *s, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0)
        return -1;
    s->p += n;
    return 0;
}

static int is_digit(const struct scan *s) { return s->p < s->end && *s->p >= '0' && *s->p <= '9'; }

static int scan_number(struct scan *s)
{
    if (s->p < s->end && *s->p == '-') {
        s->p++;
        if (scan_literal(s, "Infinity") == 0) /* Python's json accepts these */
            return 0;
    }
    if (!is_digit(s))
        return -1;
    if (*s->p++ != '0')
        while (is_digit(s))
            s->p++;
    if (s->p < s->end && *s->p == '.') {
        s->p++;
        if (!is_digit(s))
            return -1;
        while (is_digit(s))
            s->p++;
    }
    if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
        s->p++;
        if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
            s->p++;
        if (!is_digit(s))
            return -1;
        while (is_digit(s))
            s->p++;
    }
    return 0;
}

/* Skips one JSON value of any depth, without recursion. */
static int scan_value(struct scan *s)
{
    char stack[MAX_DEPTH];
    int depth = 0;
    for (;;) {
        skip_ws(s);
        if (s->p >= s->end)
            return -1;
        unsigned c = *s->p;
        if (c == '{' || c == '[') {
            if (depth == MAX_DEPTH)
                return -1;
            stack[depth++] = (char)c;
            s->p++;
            skip_ws(s);
            if (s->p < s->end && *s->p == (c == '{' ? '}' : ']')) {
                s->p++;
                depth--;
                goto after_value;
            }
            if (c == '{') {
                if (s->p >= s->end || *s->p != '"' || scan_string(s, NULL, NULL))
                    return -1;
                skip_ws(s);
                if (s->p >= s->end || *s->p++ != ':')
                    return -1;
            }
            continue;
        }
        if (c == '"') {
            if (scan_string(s, NULL, NULL))
                return -1;
        } else if (c == 't') {
            if (scan_literal(s, "true"))
                return -1;
        } else if (c == 'f') {
            if (scan_literal(s, "false"))
                return -1;
        } else if (c == 'n') {
            if (scan_literal(s, "null"))
                return -1;
        } else if (c == 'N') {
            if (scan_literal(s, "NaN"))
                return -1;
        } else if (c == 'I') {
            if (scan_literal(s, "Infinity"))
                return -1;
        } else if (scan_number(s)) {
            return -1;
        }
    after_value:
        for (;;) {
            if (depth == 0)
                return 0;
            skip_ws(s);
            if (s->p >= s->end)
                return -1;
            char open = stack[depth - 1];
            if (*s->p == ',') {
                s->p++;
                if (open == '{') {
                    skip_ws(s);
                    if (s->p >= s->end || *s->p != '"' || scan_string(s, NULL, NULL))
                        return -1;
                    skip_ws(s);
                    if (s->p >= s->end || *s->p++ != ':')
                        return -1;
                }
                break;
            }
            if (*s->p != (open == '{' ? '}' : ']'))
                return -1;
            s->p++;
            depth--;
        }
    }
}

/* The decoded top-level string of key `key`, or NULL (absent, not a string, or
 * the whole input is not a JSON object). Like Python, a repeated key's last
 * value wins. */
struct config {
    char *agent_socket;
    size_t agent_socket_len;
    int agent_socket_bad; /* present, not null, and not a non-empty string */
    char *cni_version;
};

static int scan_config(const char *data, size_t len, struct config *cfg)
{
    struct scan s = {(const unsigned char *)data, (const unsigned char *)data + len};
    char *key = malloc(len + 1), *val = malloc(len + 1);
    char *sock = NULL, *version = NULL;
    size_t keylen, vallen, socklen = 0;
    int sock_bad = 0;
    int ok = -1;
    if (key == NULL || val == NULL)
        goto out;
    skip_ws(&s);
    if (s.p >= s.end || *s.p++ != '{')
        goto out;
    skip_ws(&s);
    if (s.p < s.end && *s.p == '}') {
        s.p++;
    } else {
        for (;;) {
            skip_ws(&s);
            if (s.p >= s.end || *s.p != '"' || scan_string(&s, key, &keylen))
                goto out;
            skip_ws(&s);
            if (s.p >= s.end || *s.p++ != ':')
                goto out;
            skip_ws(&s);
            int is_sock = keylen == 11 && memcmp(key, "agentSocket", 11) == 0;
            int is_version = keylen == 10 && memcmp(key, "cniVersion", 10) == 0;
            if ((is_sock || is_version) && s.p < s.end && *s.p == '"') {
                if (scan_string(&s, val, &vallen))
                    goto out;
                char *copy = malloc(vallen + 1);
                if (copy == NULL)
                    goto out;
                memcpy(copy, val, vallen);
                copy[vallen] = '\0';
                if (is_sock) {
                    free(sock);
                    sock = copy;
                    socklen = vallen;
                    sock_bad = vallen == 0;
                } else {
                    free(version);
                    version = copy;
                }
            } else {
                if (is_sock) { /* a later non-string value replaces the string */
                    free(sock);
                    sock = NULL;
                    sock_bad = scan_literal(&(struct scan){s.p, s.end}, "null") != 0;
                } else if (is_version) {
                    free(version);
                    version = NULL;
                }
                if (scan_value(&s))
                    goto out;
            }
            skip_ws(&s);
            if (s.p < s.end && *s.p == ',') {
                s.p++;
                continue;
            }
            if (s.p < s.end && *s.p == '}') {
                s.p++;
                break;
            }
            goto out;
        }
    }
    skip_ws(&s);
    if (s.p != s.end)
        goto out;
    cfg->agent_socket = sock;
    cfg->agent_socket_len = socklen;
    cfg->agent_socket_bad = sock_bad;
    cfg->cni_version = version;
    sock = version = NULL;
    ok = 0;
out:
    free(key);
    free(val);
    free(sock);
    free(version);
    return ok;
}

/* ---- Answers the shim gives by itself */

/* A JSON string as Python's json.dumps writes it (ensure_ascii). */
static void json_string(struct buf *b, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    char tmp[16];
    buf_str(b, "\"");
    while (*p) {
        unsigned c = *p, cp = c;
        int extra = c >= 0xf0 ? 3 : c >= 0xe0 ? 2 : c >= 0xc0 ? 1 : 0;
        if (c >= 0x80) {
            cp = c & (0x3f >> extra);
            int i;
            for (i = 1; i <= extra && (p[i] & 0xc0) == 0x80; i++)
                cp = (cp << 6) | (p[i] & 0x3f);
            if (extra == 0 || i <= extra) {
                cp = 0xfffd;
                extra = 0;
            }
        }
        p += 1 + extra;
        if (cp == '"')
            buf_str(b, "\\\"");
        else if (cp == '\\')
            buf_str(b, "\\\\");
        else if (cp == '\n')
            buf_str(b, "\\n");
        else if (cp == '\r')
            buf_str(b, "\\r");
        else if (cp == '\t')
            buf_str(b, "\\t");
        else if (cp == '\b')
            buf_str(b, "\\b");
        else if (cp == '\f')
            buf_str(b, "\\f");
        else if (cp >= 0x20 && cp < 0x7f)
            buf_add(b, p - 1, 1);
        else if (cp < 0x10000) {
            snprintf(tmp, sizeof tmp, "\\u%04x", cp);
            buf_str(b, tmp);
        } else {
            cp -= 0x10000;
            snprintf(tmp, sizeof tmp, "\\u%04x\\u%04x", 0xd800 + (cp >> 10), 0xdc00 + (cp & 0x3ff));
            buf_str(b, tmp);
        }
    }
    buf_str(b, "\"");
}

static void write_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, data, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        data += n;
        len -= (size_t)n;
    }
}

static int cni_error(const char *version, int code, const char *msg, const char *details)
{
    struct buf b = {0};
    char num[16];
    buf_str(&b, "{\"cniVersion\": ");
    json_string(&b, version ? version : DEFAULT_CNI_VERSION);
    snprintf(num, sizeof num, "%d", code);
    buf_str(&b, ", \"code\": ");
    buf_str(&b, num);
    buf_str(&b, ", \"msg\": ");
    json_string(&b, msg);
    buf_str(&b, ", \"details\": ");
    json_string(&b, details);
    buf_str(&b, "}\n");
    write_all(1, b.data, b.len);
    return 1;
}

/* ---- The exchange with the agent */

static const char *const cni_vars[][2] = {
    {"CNI_COMMAND", "X-CNI-Command"}, {"CNI_CONTAINERID", "X-CNI-ContainerID"},
    {"CNI_NETNS", "X-CNI-Netns"},     {"CNI_IFNAME", "X-CNI-Ifname"},
    {"CNI_ARGS", "X-CNI-Args"},       {"CNI_PATH", "X-CNI-Path"},
};

/* Each variable goes as base64 of its bytes: nothing stripped, nothing
 * re-encoded, no byte that could end a header. */
static void buf_base64(struct buf *b, const unsigned char *p, size_t len)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char out[4];
    for (size_t i = 0; i < len; i += 3) {
        unsigned v = (unsigned)p[i] << 16;
        if (i + 1 < len)
            v |= (unsigned)p[i + 1] << 8;
        if (i + 2 < len)
            v |= p[i + 2];
        out[0] = abc[(v >> 18) & 63];
        out[1] = abc[(v >> 12) & 63];
        out[2] = i + 1 < len ? abc[(v >> 6) & 63] : '=';
        out[3] = i + 2 < len ? abc[v & 63] : '=';
        buf_add(b, out, 4);
    }
}

static int read_all(int fd, struct buf *b)
{
    char chunk[65536];
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0)
            return 0;
        buf_add(b, chunk, (size_t)n);
    }
}

static int send_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' || c == '\f'; }

/* Python's int() of a header value: optional sign, digits (no base prefix). */
static int parse_int(const char *p, const char *end, int base, long *out)
{
    int neg = 0, digits = 0;
    long v = 0;
    while (p < end && is_space(*p))
        p++;
    while (end > p && is_space(end[-1]))
        end--;
    if (p < end && (*p == '+' || *p == '-'))
        neg = *p++ == '-';
    for (; p < end; p++, digits++) {
        int d = *p >= '0' && *p <= '9' ? *p - '0' : base == 16 && (*p | 0x20) >= 'a' && (*p | 0x20) <= 'f' ? (*p | 0x20) - 'a' + 10 : -1;
        if (d < 0 || v > 100000000L)
            return -1;
        v = v * base + d;
    }
    if (digits == 0)
        return -1;
    *out = neg ? -v : v;
    return 0;
}

/* The agent's answer: 0 with the exit code and body, or -1 with why in `why`
 * (the same reasons, in the same order, as the Python shim's _exchange). */
static int parse_answer(struct buf *r, long *exit_code, struct buf *body, char *why, size_t whylen)
{
    const char *head_end = memmem(r->data, r->len, "\r\n\r\n", 4);
    if (head_end == NULL) {
        snprintf(why, whylen, "truncated HTTP answer");
        return -1;
    }
    const char *line = r->data, *eol = memmem(line, (size_t)(head_end + 2 - line), "\r\n", 2);
    const char *sp = memchr(line, ' ', (size_t)(eol - line));
    if (sp == NULL || sp - line < 7 || memcmp(line, "HTTP/1.", 7) != 0) {
        snprintf(why, whylen, "not an HTTP answer: b'%.*s'", (int)((eol - line) < 60 ? eol - line : 60), line);
        return -1;
    }
    const char *code = sp + 1, *code_end = memchr(code, ' ', (size_t)(eol - code));
    if (code_end == NULL)
        code_end = eol;
    const char *exit_value = NULL, *exit_end = NULL, *length = NULL, *length_end = NULL;
    int chunked = 0;
    for (line = eol + 2; line < head_end + 2; line = eol + 2) {
        eol = memmem(line, (size_t)(head_end + 2 - line), "\r\n", 2);
        const char *colon = memchr(line, ':', (size_t)(eol - line)), *name = line, *name_end;
        name_end = colon ? colon : eol;
        while (name < name_end && is_space(*name))
            name++;
        while (name_end > name && is_space(name_end[-1]))
            name_end--;
        const char *value = colon ? colon + 1 : eol;
        size_t n = (size_t)(name_end - name);
        if (n == 10 && strncasecmp(name, "X-CNI-Exit", 10) == 0) {
            exit_value = value;
            exit_end = eol;
        } else if (n == 14 && strncasecmp(name, "Content-Length", 14) == 0) {
            length = value;
            length_end = eol;
        } else if (n == 17 && strncasecmp(name, "Transfer-Encoding", 17) == 0) {
            while (value < eol && is_space(*value))
                value++;
            const char *v_end = eol;
            while (v_end > value && is_space(v_end[-1]))
                v_end--;
            chunked = v_end - value == 7 && strncasecmp(value, "chunked", 7) == 0;
        }
    }
    if (code_end - code != 3 || memcmp(code, "200", 3) != 0 || exit_value == NULL) {
        snprintf(why, whylen, "agent answered HTTP %.*s", (int)(code_end - code > 60 ? 60 : code_end - code), code);
        return -1;
    }
    const char *data = head_end + 4;
    size_t avail = r->len - (size_t)(data - r->data);
    long n;
    if (length != NULL) {
        if (parse_int(length, length_end, 10, &n) < 0) {
            snprintf(why, whylen, "invalid Content-Length");
            return -1;
        }
        if (n >= 0 && avail < (size_t)n) {
            snprintf(why, whylen, "truncated HTTP body");
            return -1;
        }
        buf_add(body, data, n >= 0 ? (size_t)n : 0);
    } else if (chunked) {
        const char *p = data, *end = r->data + r->len;
        for (;;) {
            const char *size_end = memmem(p, (size_t)(end - p), "\r\n", 2);
            const char *ext = size_end ? memchr(p, ';', (size_t)(size_end - p)) : NULL;
            if (size_end == NULL || parse_int(p, ext ? ext : size_end, 16, &n) < 0 || n < 0) {
                snprintf(why, whylen, "invalid chunked body");
                return -1;
            }
            if (n == 0)
                break;
            p = size_end + 2;
            if ((size_t)(end - p) < (size_t)n + 2) {
                snprintf(why, whylen, "truncated chunked body");
                return -1;
            }
            buf_add(body, p, (size_t)n);
            p += n + 2;
        }
    } else {
        buf_add(body, data, avail);
    }
    if (parse_int(exit_value, exit_end, 10, exit_code) < 0) {
        snprintf(why, whylen, "invalid X-CNI-Exit");
        return -1;
    }
    return 0;
}

/* The answer is complete once its Content-Length is in; otherwise (chunked,
 * or no length) the agent's close ends it (we send Connection: close). */
static int answer_complete(const struct buf *r)
{
    const char *head_end = r->len ? memmem(r->data, r->len, "\r\n\r\n", 4) : NULL;
    if (head_end == NULL)
        return 0;
    for (const char *line = r->data; line < head_end;) {
        const char *eol = memmem(line, (size_t)(head_end + 2 - line), "\r\n", 2);
        long n;
        if (eol - line > 15 && strncasecmp(line, "Content-Length:", 15) == 0)
            return parse_int(line + 15, eol, 10, &n) == 0 && n >= 0 &&
                   r->len - (size_t)(head_end + 4 - r->data) >= (size_t)n;
        line = eol + 2;
    }
    return 0;
}

/* Whether stdin is a network config (set once in main). */
static int config_decodable;

/* No answer from the agent: try again later (11), unless stdin is no network
 * config at all; then no retry can succeed, and the answer is the agent's own
 * for it, a decode failure (6), with why the agent said nothing. */
static int unanswered(const char *version, const char *msg, const char *details)
{
    if (!config_decodable)
        return cni_error(version, 6, "cannot decode the network config on stdin", msg);
    return cni_error(version, 11, msg, details);
}

static int unreachable(const char *version, const char *path, int err)
{
    char msg[512], details[256];
    if (err == EAGAIN || err == EWOULDBLOCK) { /* SO_RCVTIMEO/SO_SNDTIMEO expired */
        snprintf(msg, sizeof msg, "podwire agent unreachable at %.300s: TimeoutError", path);
        snprintf(details, sizeof details, "timed out");
    } else {
        snprintf(msg, sizeof msg, "podwire agent unreachable at %.300s: %s", path, strerror(err));
        snprintf(details, sizeof details, "[Errno %d] %s", err, strerror(err));
    }
    return unanswered(version, msg, details);
}

int main(void)
{
    struct buf in = {0}, req = {0}, resp = {0}, body = {0};
    struct config cfg = {0};
    if (read_all(0, &in) < 0)
        in.len = 0; /* unreadable stdin is the agent's to judge, like empty stdin */
    buf_add(&in, "", 0);
    size_t bom = in.len >= 3 && memcmp(in.data, UTF8_BOM, 3) == 0 ? 3 : 0;
    config_decodable = utf8_valid((const unsigned char *)in.data + bom, in.len - bom) &&
                       scan_config(in.data + bom, in.len - bom, &cfg) == 0;
    if (!config_decodable)
        memset(&cfg, 0, sizeof cfg);
    const char *version = cfg.cni_version && *cfg.cni_version ? cfg.cni_version : NULL;

    const char *command = getenv("CNI_COMMAND");
    if (command && strcmp(command, "VERSION") == 0) {
        write_all(1, VERSION_ANSWER "\n", sizeof VERSION_ANSWER);
        return 0;
    }

    /* The agent's limit on stdin: no point sending what it cannot read. */
    if (in.len > MAX_STDIN) {
        char msg[96];
        snprintf(msg, sizeof msg, "the network config on stdin is over %d bytes", MAX_STDIN);
        return cni_error(version, 7, msg, "see docs/cni.md, Limits");
    }
    if (cfg.agent_socket_bad && memmem(in.data, in.len, "agentSocket", 11) != NULL)
        return cni_error(version, 7, "agentSocket must be a non-empty string", "agentSocket");

    /* Like the Python shim, which parses only when the raw key is present. */
    const char *path = cfg.agent_socket;
    size_t path_len = cfg.agent_socket_len;
    if (path == NULL || path_len == 0 || memmem(in.data, in.len, "agentSocket", 11) == NULL) {
        path = getenv("PODWIRE_AGENT_SOCKET");
        if (path == NULL || *path == '\0')
            path = DEFAULT_SOCKET;
        path_len = strlen(path);
    }

    char len_text[32];
    snprintf(len_text, sizeof len_text, "%zu", in.len);
    buf_str(&req, "POST /v1/cni HTTP/1.1\r\nHost: podwire\r\nContent-Length: ");
    buf_str(&req, len_text);
    buf_str(&req, "\r\n");
    buf_str(&req, "X-CNI-Encoding: base64\r\n");
    for (size_t i = 0; i < sizeof cni_vars / sizeof cni_vars[0]; i++) {
        const char *value = getenv(cni_vars[i][0]);
        if (value == NULL)
            continue;
        buf_str(&req, cni_vars[i][1]);
        buf_str(&req, ": ");
        buf_base64(&req, (const unsigned char *)value, strlen(value));
        buf_str(&req, "\r\n");
    }
    buf_str(&req, "Connection: close\r\n\r\n");
    buf_add(&req, in.data, in.len);

    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    if (path_len > sizeof addr.sun_path) {
        char msg[512];
        snprintf(msg, sizeof msg, "podwire agent unreachable at %.300s: OSError", path);
        return unanswered(version, msg, "AF_UNIX path too long");
    }
    memcpy(addr.sun_path, path, path_len);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return unreachable(version, path, errno);
    const char *timeout_text = getenv("PODWIRE_CNI_TIMEOUT");
    char *timeout_end = NULL;
    double timeout = timeout_text ? strtod(timeout_text, &timeout_end) : IO_TIMEOUT_SECONDS;
    if (timeout_text && (timeout_end == timeout_text || *timeout_end || !(timeout > 0)))
        timeout = IO_TIMEOUT_SECONDS;
    struct timeval tv = {.tv_sec = (time_t)timeout,
                         .tv_usec = (suseconds_t)((timeout - (double)(time_t)timeout) * 1e6)};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    socklen_t addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + path_len);
    if (connect(fd, (struct sockaddr *)&addr, addr_len) < 0)
        return unreachable(version, path, errno);
    /* The agent may answer before reading all of stdin (one over its size
     * limit) and close: its answer is still there to read. */
    if (send_all(fd, req.data, req.len) < 0 && errno != EPIPE && errno != ECONNRESET)
        return unreachable(version, path, errno);
    while (!answer_complete(&resp)) {
        char chunk[65536];
        ssize_t n = read(fd, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return unreachable(version, path, errno);
        if (n == 0)
            break;
        buf_add(&resp, chunk, (size_t)n);
    }
    close(fd);

    long exit_code;
    char why[128];
    buf_add(&resp, "", 0);
    if (parse_answer(&resp, &exit_code, &body, why, sizeof why) < 0) {
        char msg[512];
        snprintf(msg, sizeof msg, "podwire agent at %.300s answered garbage", path);
        return unanswered(version, msg, why);
    }
    write_all(1, body.data, body.len);
    return (int)(exit_code & 0xff); /* as Python's sys.exit(n) */
}
