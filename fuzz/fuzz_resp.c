/* fuzz_resp.c — what a Redis server sends the client: RESP bytes through
 * hiredis's reader (the one the client's connections use), fed in two
 * pieces as reads split them (with the client's guard on array sizes),
 * and every reply through what the client
 * makes of it (redis_sub_reply on the subscribed connection,
 * redis_numsub_reply for PUBSUB NUMSUB), every byte of a message read as
 * the Lua binding would. The same bytes, as a string, go through the
 * --redis URL parser. An error reply or a protocol error is fine; an
 * abort or a sanitizer report is not. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "redis.h"

static volatile unsigned char sink;

static void touch(const char *p, size_t n) {
  for (size_t i = 0; i < n; i++) sink ^= (unsigned char)p[i];
}

static void use(redisReply *r) {
  redis_msg m;
  if (redis_sub_reply(r, &m) == REDIS_SUB_MESSAGE) {
    touch(m.channel, m.channel_len);
    touch(m.payload, m.payload_len);
    if (m.pattern) touch(m.pattern, m.pattern_len);
  }
  long long count;
  const char *err = NULL;
  if (redis_numsub_reply(r, &count, &err) != 0) touch(err, strlen(err));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  redisReader *rd = redisReaderCreate();
  if (!rd) return 0;
  redis_reader_guard(rd); /* as the client's connections have it */
  size_t cut = size ? data[0] % (size + 1) : 0;
  const char *p = (const char *)data;
  const size_t pieces[2][2] = {{0, cut}, {cut, size - cut}};
  for (int i = 0; i < 2; i++) {
    if (redisReaderFeed(rd, p + pieces[i][0], pieces[i][1]) != REDIS_OK) break;
    void *r;
    int st;
    while ((st = redisReaderGetReply(rd, &r)) == REDIS_OK && r) {
      use(r);
      freeReplyObject(r);
    }
    if (st != REDIS_OK) break; /* a protocol error: the client drops the connection */
  }
  redisReaderFree(rd);

  char *url = malloc(size + 1);
  if (url) {
    memcpy(url, data, size);
    url[size] = '\0';
    redis_url u;
    redis_url_parse(&u, url);
    redis_url_free(&u);
    free(url);
  }
  return 0;
}
