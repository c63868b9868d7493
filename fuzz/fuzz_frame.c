/*
** fuzz_frame.c: the byte stream a worker process sends its parent, cut
** into frames as the process pool does (ppool_frame, ppool_result: the
** code readworker and onframe run), arriving in chunks of fuzzed sizes.
** Input: one byte that seeds the chunk sizes, then the stream.  The
** parent expects results for tasks 1, 2, 3... in order; a result's
** message goes through marshal_check, then the decoder (code allowed:
** functions come back from workers), as when a script reads it.  Properties:
**   - no crash, leak or sanitizer report;
**   - cutting the stream in chunks finds the same frames as reading it
**     whole, and the same verdict (bad frame, truncated, or clean);
**   - a result's parts lie inside its frame and add up to it.
*/
#include "fuzz.h"
#include "ppool.h"

#define MAXFRAMES 256

typedef struct Cut {
  int n;                          /* frames handled */
  size_t at[MAXFRAMES];           /* offset of each in the stream */
  int verdict;                    /* 0 clean, 1 bad frame, 2 truncated */
  uint64_t nextid;
} Cut;

static lua_State *L;

/* One complete frame at b (its whole size 8 + flen): 0, or 1 when the
** parent breaks the pool over it. */
static int onframe (Cut *c, const unsigned char *f, uint64_t flen,
                    int decode) {
  const unsigned char *b = f + PP_HEADER;
  size_t len = (size_t)(flen - 1);
  PPResult r;
  char why[256];
  FzDecode z;
  switch (f[8]) {
    case 'R': return len == 0 ? 0 : 1;
    case 'F': return 1;
    case 'r':
      if (ppool_result(b, len, &r) != NULL || r.id != c->nextid) return 1;
      fz_assert(r.failed == 0 || r.failed == 1);
      fz_assert(r.tb == b + 13 && r.data == r.tb + r.tblen);
      fz_assert(13 + r.tblen + r.dlen == len);
      c->nextid++;
      if (r.failed == 1 && r.dlen == 0)
        return 0;       /* a failure without its value, as onframe takes it */
      if (marshal_check((const char *)r.data, r.dlen, why, sizeof why) != 0)
        return 1;
      if (decode && fz_decode(L, &z, r.data, r.dlen, 0) >= 0)
        lua_settop(L, 0);
      return 0;
    default: return 1;
  }
}

/* Frames in in[*pos .. inlen), as readworker handles them. */
static int frames (Cut *c, const unsigned char *in, size_t inlen,
                   size_t *pos, size_t base, int decode) {
  uint64_t flen;
  int r;
  while ((r = ppool_frame(in + *pos, inlen - *pos, &flen)) == 1) {
    fz_assert(8 + flen <= inlen - *pos);
    if (c->n < MAXFRAMES) c->at[c->n] = base + *pos;
    c->n++;
    if (onframe(c, in + *pos, flen, decode)) return 1;
    *pos += 8 + (size_t)flen;
  }
  if (r < 0) return 1;
  fz_assert(flen == 0 ? inlen - *pos < PP_HEADER
                      : 8 + flen > inlen - *pos);
  return 0;
}

/* The whole stream in chunks whose sizes come from 'seed' (0: at once). */
static void readall (Cut *c, const unsigned char *s, size_t len,
                     unsigned seed, int decode) {
  unsigned char *in = malloc(len + 1);
  size_t inlen = 0, fed = 0, base = 0;
  fz_assert(in != NULL);
  memset(c, 0, sizeof *c);
  c->nextid = 1;
  while (fed < len) {
    size_t pos = 0, chunk = len - fed;
    if (seed != 0) {
      seed = seed * 1103515245u + 12345u;
      chunk = 1 + (seed >> 16) % 97;
      if (chunk > len - fed) chunk = len - fed;
    }
    memcpy(in + inlen, s + fed, chunk);
    inlen += chunk;
    fed += chunk;
    if (frames(c, in, inlen, &pos, base, decode)) {
      c->verdict = 1;
      free(in);
      return;
    }
    memmove(in, in + pos, inlen - pos);     /* keep the incomplete frame */
    inlen -= pos;
    base += pos;
  }
  c->verdict = (inlen > 0) ? 2 : 0;
  free(in);
}

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size) {
  Cut whole, chunked;
  int i;
  if (L == NULL) L = fz_newstate();
  if (size < 1) return 0;
  readall(&whole, data + 1, size - 1, 0, 1);
  readall(&chunked, data + 1, size - 1, 1u + data[0], 0);
  fz_assert(whole.verdict == chunked.verdict);
  fz_assert(whole.n == chunked.n);
  for (i = 0; i < whole.n && i < MAXFRAMES; i++)
    fz_assert(whole.at[i] == chunked.at[i]);
  return 0;
}
