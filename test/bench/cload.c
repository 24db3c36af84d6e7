// A reference load client in C for test/bench/tail-split.ts: dkv (binary frames) or Redis
// (RESP), a closed loop of c requests in flight over n connections, each answered request
// replaced at once, latency from enqueueing a request to reading its reply. It has no
// garbage collector, so what it measures of a server's tail is the server's (and the
// kernel's), not a JavaScript client's. Prints one JSON line.
//
//   cc -O2 -o cload cload.c
// With -r RATE it is an open loop instead: requests at RATE per second (at most c/n in flight
// per connection), each timed from when it was due, so two servers can be compared at the
// same offered load.
//
//   cload -p PORT [-m dkv|redis] [-t set|get] [-c 50] [-n 1] [-d 5] [-w 1] [-k 1000] [-s 128] [-S 100] [-r RATE]
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

#define MAXCONN 256
#define RING 65536
#define TICK_US 50
typedef struct {
  int fd;
  char *out;
  size_t outlen, outcap;
  char *in;
  size_t inlen, incap;
  int inflight;
  double fifo[RING];  // redis: replies in order
  unsigned head, tail;
} Conn;

static int redis = 0, is_get = 0, valsize = 128, keys = 1000, shard = 100;
static char val[1 << 16];
static double sendt[RING];
static uint32_t next_id = 1;
static uint64_t seq = 0;
static double *lat;
static size_t nlat = 0, maxlat = 50000000;
static int recording = 0;
static uint32_t cidh = 0x12345671, cidl = 0x89abcdef;

static void ensure(char **b, size_t *cap, size_t need) {
  if (need <= *cap) return;
  while (*cap < need) *cap = *cap ? *cap * 2 : 65536;
  *b = realloc(*b, *cap);
}

static void put32(char *p, uint32_t v) { memcpy(p, &v, 4); }

static void enqueue(Conn *c, double t) {
  char key[64];
  int kl = snprintf(key, sizeof key, "__cload/%d", (int)(seq++ % keys));
  if (redis) {
    char hdr[128];
    int hl;
    if (is_get) {
      hl = snprintf(hdr, sizeof hdr, "*2\r\n$3\r\nGET\r\n$%d\r\n%s\r\n", kl, key);
      ensure(&c->out, &c->outcap, c->outlen + hl);
      memcpy(c->out + c->outlen, hdr, hl);
      c->outlen += hl;
    } else {
      hl = snprintf(hdr, sizeof hdr, "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n", kl, key, valsize);
      ensure(&c->out, &c->outcap, c->outlen + hl + valsize + 2);
      memcpy(c->out + c->outlen, hdr, hl);
      c->outlen += hl;
      memcpy(c->out + c->outlen, val, valsize);
      c->outlen += valsize;
      memcpy(c->out + c->outlen, "\r\n", 2);
      c->outlen += 2;
    }
    c->fifo[c->tail++ % RING] = t;
  } else {
    uint32_t body = 4 + kl + (is_get ? 0 : 4 + valsize);
    ensure(&c->out, &c->outcap, c->outlen + 28 + body);
    char *p = c->out + c->outlen;
    p[0] = (char)0xdb; p[1] = 1; p[2] = 1; p[3] = 0;
    put32(p + 4, body);
    uint32_t id = next_id++;
    if (next_id == 0) next_id = 1;
    put32(p + 8, id);
    put32(p + 12, shard);
    uint16_t op = is_get ? 4 : 1, z = 0;
    memcpy(p + 16, &op, 2);
    memcpy(p + 18, &z, 2);
    put32(p + 20, cidh);
    put32(p + 24, cidl);
    p += 28;
    put32(p, kl); memcpy(p + 4, key, kl); p += 4 + kl;
    if (!is_get) { put32(p, valsize); memcpy(p + 4, val, valsize); }
    c->outlen += 28 + body;
    sendt[id % RING] = t;
  }
  c->inflight++;
}

static void flushc(Conn *c) {
  size_t off = 0;
  while (off < c->outlen) {
    ssize_t w = write(c->fd, c->out + off, c->outlen - off);
    if (w < 0) {
      if (errno == EAGAIN) break;
      perror("write"); exit(1);
    }
    off += w;
  }
  memmove(c->out, c->out + off, c->outlen - off);
  c->outlen -= off;
}

static void record(double t0, double t1) {
  if (recording && nlat < maxlat) lat[nlat++] = t1 - t0;
}

// Parses complete replies; returns how many completed.
static int parse(Conn *c, double t) {
  size_t pos = 0;
  int done = 0;
  for (;;) {
    size_t avail = c->inlen - pos;
    char *p = c->in + pos;
    if (redis) {
      if (avail < 3) break;
      char *nl = memchr(p, '\n', avail);
      if (!nl) break;
      size_t linelen = nl - p + 1;
      size_t total = linelen;
      if (p[0] == '$') {
        long n = strtol(p + 1, NULL, 10);
        if (n >= 0) total += n + 2;
      } else if (p[0] == '-') {
        fprintf(stderr, "redis error: %.*s\n", (int)linelen, p); exit(1);
      }
      if (avail < total) break;
      pos += total;
      record(c->fifo[c->head++ % RING], t);
    } else {
      if (avail < 28) break;
      uint32_t body, id;
      memcpy(&body, p + 4, 4);
      memcpy(&id, p + 8, 4);
      if (avail < 28 + body) break;
      if (p[3] & 2) { fprintf(stderr, "dkv error: %.*s\n", (int)body, p + 28); exit(1); }
      pos += 28 + body;
      record(sendt[id % RING], t);
    }
    c->inflight--;
    done++;
  }
  memmove(c->in, c->in + pos, c->inlen - pos);
  c->inlen -= pos;
  return done;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  const char *host = "127.0.0.1";
  int port = 0, conc = 50, nconn = 1;
  double dur = 5, warm = 1, rate = 0;
  int opt;
  while ((opt = getopt(argc, argv, "h:p:m:t:c:n:d:w:k:s:S:r:")) != -1) {
    switch (opt) {
      case 'h': host = optarg; break;
      case 'p': port = atoi(optarg); break;
      case 'm': redis = strcmp(optarg, "redis") == 0; break;
      case 't': is_get = strcmp(optarg, "get") == 0; break;
      case 'c': conc = atoi(optarg); break;
      case 'n': nconn = atoi(optarg); break;
      case 'd': dur = atof(optarg); break;
      case 'w': warm = atof(optarg); break;
      case 'k': keys = atoi(optarg); break;
      case 's': valsize = atoi(optarg); break;
      case 'S': shard = atoi(optarg); break;
      case 'r': rate = atof(optarg); break;
    }
  }
  // Bounds: c within the request-id ring, values within the buffer, at least one key.
  if (port == 0 || nconn < 1 || nconn > MAXCONN || conc < nconn || conc > 4096 || keys < 1 || valsize < 0 ||
      valsize > (int)sizeof val || dur <= 0 || rate < 0 || rate > 2e6) {
    fprintf(stderr, "usage: cload -p PORT [-m dkv|redis] [-t set|get] [-c 50] [-n 1] [-d 5] [-w 1] [-k 1000] [-s 128] [-S 100] [-r RATE]\n");
    return 2;
  }
  memset(val, 'a', sizeof val);
  prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);  // ticks of TICK_US, not the default 50 us slack
  lat = malloc(maxlat * sizeof(double));
  srand(getpid());
  cidh = (rand() << 1) | 1;
  cidl = rand();
  Conn *cs = calloc(nconn, sizeof(Conn));
  struct pollfd pf[MAXCONN];
  for (int i = 0; i < nconn; i++) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, host, &a.sin_addr);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) { perror("connect"); return 1; }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    cs[i].fd = fd;
    pf[i].fd = fd;
    pf[i].events = POLLIN;
  }
  // Preload keys for get (set every key once, c in flight).
  if (is_get) {
    is_get = 0;
    uint64_t left = keys;
    for (int i = 0; i < nconn && left; i++)
      for (int j = 0; j < conc / nconn && left; j++, left--) enqueue(&cs[i], now_us());
    for (int i = 0; i < nconn; i++) flushc(&cs[i]);
    int inflight = keys - left;
    while (inflight > 0) {
      poll(pf, nconn, 1000);
      for (int i = 0; i < nconn; i++) {
        if (!(pf[i].revents & POLLIN)) continue;
        Conn *c = &cs[i];
        ensure(&c->in, &c->incap, c->inlen + 65536);
        ssize_t r = read(c->fd, c->in + c->inlen, c->incap - c->inlen);
        if (r <= 0) continue;
        c->inlen += r;
        int d = parse(c, now_us());
        inflight -= d;
        for (int k = 0; k < d && left; k++, left--, inflight++) enqueue(c, now_us());
        flushc(c);
      }
    }
    is_get = 1;
    seq = 0;
  }
  struct rusage ru0, ru1;
  double t0 = now_us();
  double tw = t0 + warm * 1e6, tend = tw + dur * 1e6;
  uint64_t ops_measured = 0;
  int per = conc / nconn;
  if (rate <= 0) {
    for (int i = 0; i < nconn; i++) {
      for (int j = 0; j < per; j++) enqueue(&cs[i], now_us());
      flushc(&cs[i]);
    }
  }
  // Open loop (-r): request k is due at t0 + k/rate and timed from then, so one that waits
  // for a free slot (at most `per` in flight on a connection) waits on the clock. Sends
  // happen on ticks of TICK_US: between them the client sleeps in ppoll, not spinning.
  uint64_t scheduled = 0;
  int rr = 0;
  for (;;) {
    double t = now_us();
    if (!recording && t >= tw) { recording = 1; getrusage(RUSAGE_SELF, &ru0); }
    if (t >= tend) break;
    if (rate > 0) {
      uint64_t due = (uint64_t)((t - t0) * rate / 1e6);
      while (scheduled < due) {
        int k = 0;
        while (k < nconn && cs[rr].inflight >= per) { rr = (rr + 1) % nconn; k++; }
        if (k == nconn) break;  // every slot busy: what is due waits
        enqueue(&cs[rr], t0 + scheduled * 1e6 / rate);
        rr = (rr + 1) % nconn;
        scheduled++;
      }
      for (int i = 0; i < nconn; i++)
        if (cs[i].outlen) flushc(&cs[i]);
    }
    struct timespec tick = {0, rate > 0 ? TICK_US * 1000 : 1000000};
    int n = ppoll(pf, nconn, &tick, NULL);
    if (n <= 0) continue;
    double tr = now_us();
    for (int i = 0; i < nconn; i++) {
      if (!(pf[i].revents & POLLIN)) continue;
      Conn *c = &cs[i];
      ensure(&c->in, &c->incap, c->inlen + 65536);
      ssize_t r = read(c->fd, c->in + c->inlen, c->incap - c->inlen);
      if (r <= 0) { fprintf(stderr, "connection closed\n"); return 1; }
      c->inlen += r;
      int d = parse(c, tr);
      if (recording) ops_measured += d;
      if (rate <= 0) {
        for (int k = 0; k < d; k++) enqueue(c, now_us());
        flushc(c);
      }
    }
  }
  getrusage(RUSAGE_SELF, &ru1);
  double secs = dur;
  qsort(lat, nlat, sizeof(double), cmp);
  double cpu = (ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec) + (ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec) / 1e6 +
               (ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) + (ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6;
#define Q(q) (nlat ? lat[(size_t)((q) * (nlat - 1))] / 1000 : 0)
  printf("{\"mode\":\"%s\",\"test\":\"%s\",\"c\":%d,\"conns\":%d,\"rate\":%.0f,\"ops\":%zu,\"opsPerSec\":%.0f,"
         "\"p50Ms\":%.4f,\"p90Ms\":%.4f,\"p99Ms\":%.4f,\"p999Ms\":%.4f,\"maxMs\":%.4f,\"clientCpuUsPerOp\":%.3f}\n",
         redis ? "redis" : "dkv", is_get ? "get" : "set", conc, nconn, rate, nlat, ops_measured / secs, Q(0.5), Q(0.9),
         Q(0.99), Q(0.999), Q(1.0), nlat ? cpu * 1e6 / nlat : 0);
  return 0;
}
