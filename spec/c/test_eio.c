/* test_eio.c — Engine.IO handshakes held by allow_request: let in at once or
 * later, refused with engine.io's 403, not asked again once a session
 * exists, safe when the client leaves while it waits, answered 503 and freed
 * when the endpoint goes. Socketless connections: bytes in, the write queue
 * read back. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "config.h"
#include "eio.h"
#include "http.h"
#include "server.h"

/* What answers the requests of the connections made here (their attach
 * function's user data). */
static http_site app_site;

static uv_loop_t loop;
static mw_server srv;
static eio_server *es;

enum { HOLD, ALLOW, DENY };

/* What allow_request and the handler saw, and what allow_request does. */
static struct {
  int mode;
  const char *message;
  int calls, cancels, opens;
  eio_pending *held;
  char addr[64]; /* remote_addr as on_open saw it */
} A;

static void allow_request(void *ud, eio_pending *p, const http_req *req) {
  (void)ud;
  (void)req;
  A.calls++;
  if (A.mode == ALLOW) eio_allow(p, true, NULL);
  else if (A.mode == DENY) eio_allow(p, false, A.message);
  else A.held = p;
}

static void allow_cancel(void *ud, eio_pending *p) {
  (void)ud;
  A.cancels++;
  if (A.held == p) A.held = NULL;
}

static eio_session *opened;

static void on_open(void *ud, eio_session *s, const http_req *req) {
  opened = s;
  A.opens++;
  snprintf(A.addr, sizeof A.addr, "%s", req->remote_addr ? req->remote_addr : "(null)");
}
static void on_message(void *ud, eio_session *s, const char *data, size_t len, bool binary) {}
static void on_close(void *ud, eio_session *s, const char *reason) {}
static const eio_handler h = {on_open, on_message, on_close, 0};

static void handler(void *ud, const http_req *req, http_res *res) {
  if (eio_handle_http(es, req, res) != 0) http_res_simple(res, 404, "text/plain", "no");
}

/* Everything queued on c so far, as one string (caller frees). */
static char *queued(mw_conn *c) {
  mw_str out = {0};
  mw_str_append(&out, "", 0);
  for (uint32_t i = 0; i < c->wq_len; i++) mw_str_append(&out, c->wq[i].buf->data + c->wq[i].off, c->wq[i].len);
  return out.p;
}

static bool queued_has(mw_conn *c, const char *needle) {
  char *q = queued(c);
  bool has = strstr(q, needle) != NULL;
  free(q);
  return has;
}

static mw_conn *conn(const char *addr) {
  mw_conn *c = mw_conn_new(&srv, false, http_conn_attach, &app_site);
  snprintf(c->addr, sizeof c->addr, "%s", addr);
  return c;
}

static void feed(mw_conn *c, const char *s) { c->proto->on_read(c, s, strlen(s)); }

static void done(mw_conn *c) {
  mw_conn_close(c);
  while (srv.nconns) uv_run(&loop, UV_RUN_NOWAIT);
}

static void reset(int mode, const char *message) {
  memset(&A, 0, sizeof A);
  A.mode = mode;
  A.message = message;
}

static const char poll_hs[] = "GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: t\r\n\r\n";
static const char ws_hs[] = "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: t\r\n"
                            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

static void test_allowed_at_once_then_not_asked_again(void) {
  reset(ALLOW, NULL);
  mw_conn *c = conn("10.0.0.1");
  feed(c, poll_hs);
  char *q = queued(c);
  CHECK(strstr(q, "HTTP/1.1 200") != NULL);
  const char *sid = strstr(q, "0{\"sid\":\"");
  CHECK(sid != NULL);
  CHECK(A.calls == 1 && A.opens == 1);
  CHECK(strcmp(A.addr, "10.0.0.1") == 0);
  if (sid) {
    /* Requests of the session (they carry its sid) are not asked about, even
     * when allow_request would now refuse. */
    A.mode = DENY;
    char req[256];
    snprintf(req, sizeof req,
             "POST /socket.io/?EIO=4&transport=polling&sid=%.20s HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\n6",
             sid + 9);
    size_t before = c->wq_len;
    feed(c, req);
    CHECK(c->wq_len > before);
    CHECK(A.calls == 1);
    CHECK(!queued_has(c, "403"));
    char *q2 = queued(c);
    CHECK(strstr(q2, "\r\n\r\nok") != NULL);
    free(q2);
  }
  free(q);
  done(c);
}

static void test_refused(void) {
  reset(DENY, "say \"no\" \\ then\nleave");
  mw_conn *c = conn("10.0.0.2");
  feed(c, "GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: t\r\nOrigin: http://ok.example\r\n\r\n");
  CHECK(queued_has(c, "HTTP/1.1 403 Forbidden\r\n"));
  CHECK(queued_has(c, "Content-Type: application/json\r\n"));
  CHECK(queued_has(c, "{\"code\":4,\"message\":\"say \\\"no\\\" \\\\ then\\u000aleave\"}"));
  CHECK(queued_has(c, "Access-Control-Allow-Origin: http://ok.example\r\n")); /* CORS as on any answer */
  CHECK(A.calls == 1 && A.opens == 0);
  done(c);

  reset(DENY, NULL); /* no message: engine.io's own */
  c = conn("10.0.0.2");
  feed(c, poll_hs);
  CHECK(queued_has(c, "{\"code\":4,\"message\":\"Forbidden\"}"));
  done(c);

  reset(DENY, "nope"); /* a WebSocket is refused before any upgrade */
  c = conn("10.0.0.2");
  feed(c, ws_hs);
  CHECK(queued_has(c, "HTTP/1.1 403 Forbidden\r\n"));
  CHECK(queued_has(c, "{\"code\":4,\"message\":\"nope\"}"));
  CHECK(!queued_has(c, "101"));
  CHECK(A.opens == 0);
  done(c);

  reset(DENY, NULL); /* not a valid handshake: never asked (engine.io's verify order) */
  c = conn("10.0.0.2");
  feed(c, "POST /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
  CHECK(queued_has(c, "HTTP/1.1 400"));
  CHECK(A.calls == 0);
  done(c);
}

static void test_answered_later(void) {
  reset(HOLD, NULL);
  mw_conn *c = conn("10.0.0.3");
  feed(c, poll_hs);
  CHECK(A.calls == 1 && A.held != NULL);
  CHECK(c->wq_len == 0); /* the handshake waits */
  if (A.held) eio_allow(A.held, true, NULL);
  CHECK(queued_has(c, "HTTP/1.1 200"));
  CHECK(queued_has(c, "0{\"sid\":\""));
  CHECK(A.opens == 1);
  done(c);

  reset(HOLD, NULL);
  c = conn("10.0.0.3");
  feed(c, ws_hs);
  CHECK(A.held != NULL && c->wq_len == 0);
  if (A.held) eio_allow(A.held, true, NULL);
  CHECK(queued_has(c, "HTTP/1.1 101 Switching Protocols"));
  CHECK(A.opens == 1);
  done(c);

  reset(HOLD, NULL);
  c = conn("10.0.0.3");
  feed(c, poll_hs);
  if (A.held) eio_allow(A.held, false, "later no");
  CHECK(queued_has(c, "{\"code\":4,\"message\":\"later no\"}"));
  CHECK(A.opens == 0);
  done(c);
}

/* The client leaves while its handshake waits: the answer that comes later
 * finds the request still alive (http.c keeps it) but not the connection,
 * whose address the session must not read. */
static void test_client_gone(void) {
  reset(HOLD, NULL);
  mw_conn *c = conn("10.0.0.4");
  feed(c, poll_hs);
  CHECK(A.held != NULL);
  done(c); /* the connection is freed */
  if (A.held) eio_allow(A.held, true, NULL);
  CHECK(A.opens == 1);
  CHECK(strcmp(A.addr, "10.0.0.4") == 0);

  reset(HOLD, NULL);
  c = conn("10.0.0.5");
  feed(c, ws_hs);
  CHECK(A.held != NULL);
  done(c);
  if (A.held) eio_allow(A.held, true, NULL); /* no connection to upgrade: the session closes */
  CHECK(A.opens == 1);
  CHECK(strcmp(A.addr, "10.0.0.5") == 0);

  reset(HOLD, NULL);
  c = conn("10.0.0.6");
  feed(c, poll_hs);
  done(c);
  if (A.held) eio_allow(A.held, false, "gone anyway");
  CHECK(A.opens == 0);
}

/* Frees the endpoint: handshakes never answered get 503 and are freed. */
static void test_free_answers_pending(void) {
  reset(HOLD, NULL);
  mw_conn *c1 = conn("10.0.0.7"), *c2 = conn("10.0.0.8");
  feed(c1, poll_hs);
  eio_pending *first = A.held;
  feed(c2, ws_hs);
  CHECK(first != NULL && A.held != NULL && A.held != first);
  CHECK(A.calls == 2);
  eio_server_free(es);
  es = NULL;
  CHECK(A.cancels == 2);
  CHECK(queued_has(c1, "HTTP/1.1 503"));
  CHECK(queued_has(c2, "HTTP/1.1 503"));
  CHECK(!queued_has(c2, "101"));
  CHECK(A.opens == 0);
  mw_conn_close(c1);
  done(c2);
}

/* A polling session closed by the server between two polls: its next GET
 * still gets the close packet ("1"), and only then is the sid unknown. */
static void test_close_between_polls(void) {
  reset(ALLOW, NULL);
  opened = NULL;
  mw_conn *c = conn("10.0.0.9");
  feed(c, poll_hs);
  char *q = queued(c);
  const char *sid = strstr(q, "0{\"sid\":\"");
  CHECK(sid != NULL && opened != NULL);
  char get[256] = "";
  if (sid)
    snprintf(get, sizeof get, "GET /socket.io/?EIO=4&transport=polling&sid=%.20s HTTP/1.1\r\nHost: t\r\n\r\n",
             sid + 9);
  free(q);
  done(c);
  if (!sid || !opened) return;
  eio_close(opened, "forced close"); /* no GET is waiting */
  mw_conn *c2 = conn("10.0.0.9");
  feed(c2, get);
  char *q2 = queued(c2);
  CHECK(strstr(q2, "HTTP/1.1 200") != NULL);
  CHECK(strstr(q2, "\r\n\r\n1") != NULL);
  free(q2);
  done(c2);
  mw_conn *c3 = conn("10.0.0.9");
  feed(c3, get);
  CHECK(queued_has(c3, "HTTP/1.1 400"));
  CHECK(queued_has(c3, "Session ID unknown"));
  done(c3);
}

/* The query is decoded as engine.io decodes it: a malformed escape stays as
 * it is and an escaped NUL is a byte of the value, so a session id with
 * either after it names no session, and the protocol version and transport
 * are matched whole. */
static void test_query_decoding(void) {
  reset(ALLOW, NULL);
  opened = NULL;
  mw_conn *c = conn("10.0.0.10");
  feed(c, poll_hs);
  char *q = queued(c);
  const char *at = strstr(q, "0{\"sid\":\"");
  char sid[21] = "";
  if (at) snprintf(sid, sizeof sid, "%.20s", at + 9);
  free(q);
  done(c);
  CHECK(at != NULL && opened != NULL);
  static const char *const tails[] = {"%zz", "%00", "%0", "%"};
  for (size_t i = 0; i < MW_ARRAY_LEN(tails); i++) {
    char get[256];
    snprintf(get, sizeof get, "GET /socket.io/?EIO=4&transport=polling&sid=%s%s HTTP/1.1\r\nHost: t\r\n\r\n", sid,
             tails[i]);
    mw_conn *c2 = conn("10.0.0.10");
    feed(c2, get);
    CHECK(queued_has(c2, "HTTP/1.1 400"));
    CHECK(queued_has(c2, "Session ID unknown"));
    done(c2);
  }
  static const char *const bad[] = {
      "GET /socket.io/?EIO=4%00&transport=polling HTTP/1.1\r\nHost: t\r\n\r\n",
      "GET /socket.io/?EIO=4&transport=polling%zz HTTP/1.1\r\nHost: t\r\n\r\n",
      "GET /socket.io/?EIO=4&transport=pollingpollingpolling HTTP/1.1\r\nHost: t\r\n\r\n",
  };
  for (size_t i = 0; i < MW_ARRAY_LEN(bad); i++) {
    mw_conn *c3 = conn("10.0.0.10");
    feed(c3, bad[i]);
    CHECK(queued_has(c3, "HTTP/1.1 400"));
    done(c3);
  }
  /* What is well-formed still decodes: %34 is '4', '+' is a space. */
  mw_conn *c4 = conn("10.0.0.10");
  feed(c4, "GET /socket.io/?EIO=%34&transport=p%6Flling HTTP/1.1\r\nHost: t\r\n\r\n");
  CHECK(queued_has(c4, "HTTP/1.1 200"));
  CHECK(queued_has(c4, "0{\"sid\":\""));
  done(c4);
}

int main(void) {
  mw_config cfg;
  mw_config_defaults(&cfg);
  cfg.http.quiet = true;
  uv_loop_init(&loop);
  mw_server_init(&srv, &loop, &cfg.server);
  app_site = (http_site){{handler, NULL}, cfg.http};
  eio_options o;
  eio_options_defaults(&o, "/socket.io/");
  static char *origins[] = {"http://ok.example"};
  o.origins = origins;
  o.norigins = 1;
  o.allow_request = allow_request;
  o.allow_cancel = allow_cancel;
  if (eio_server_new(&es, &srv, &o, &h, NULL)) return 1;

  test_allowed_at_once_then_not_asked_again();
  test_refused();
  test_answered_later();
  test_client_gone();
  test_close_between_polls();
  test_query_decoding();
  test_free_answers_pending();

  if (es) eio_server_free(es);
  mw_server_close(&srv);
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  CHECK_REPORT();
  return failed ? 1 : 0;
}
