# Before-save events (issue 17), on the site et_before (t/conf/extra.conf.in)
# with a real receiver (t/bin/receiver.py answers as the object's "before"
# field asks, or as a fault plan says), proxied and in-process consoles:
# - proceed: the console reads exactly the bytes the admin sent
#   (Content-Length and chunked, HTTP/1.1 and HTTP/2);
# - enrich: the console saves the endpoint's object, and the after-save
#   call carries it;
# - refuse (403, or the endpoint's 4xx): the admin gets
#   {"error": ..., "txn": ...}, the console never sees the request, no
#   after-save call;
# - the endpoint fails (garbage, 500, a reset, a non-JSON answer, a hang
#   past the 1 s timeout, a body over EventTriggerCaptureLimit): 503 under
#   the default policy, the request goes on under
#   EventTriggerBeforeFailure proceed;
# - the calls: POST {root}/v1/member?event=pre-create, .../{id}?event=
#   pre-update|pre-delete, with the object (or the id) and object_type;
# - an unguarded location makes no before-save call.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use Digest::SHA qw(sha1_hex);
use HTTP::Request ();
use JSON::PP ();
use LWP::UserAgent ();
use Time::HiRes ();
use ETTest qw(:all);

start_console();
start_receiver(truncate => 1);

my $J = JSON::PP->new->canonical;
my $SITE = 'et_before';
my $ROOT = '/hooks/before';

# what the proxied console was asked (its access log, on stderr)
sub console_saw {
    my $tag = shift;
    open my $fh, '<', t_path('t_logs', 'console.log') or return 0;
    return scalar grep { index($_, $tag) >= 0 } <$fh>;
}

# the before-save calls the receiver got for an object path and event
sub before_calls {
    my($path, $event) = @_;
    return grep {
        $_->{path} eq "$ROOT/v1/$path" && $_->{method} eq 'POST'
            && ($_->{query} // '') =~ /\Aevent=\Q$event\E&txn=[0-9a-f]{32}\z/
    } calls();
}

my $UA = LWP::UserAgent->new(timeout => 10);
my $PLAN = 'http://127.0.0.1:' . define('ET_RECEIVER_PORT') . '/_plan';
sub plan_set {
    my $spec = shift;
    my $res = $UA->request(HTTP::Request->new(PUT => $PLAN,
        ['Content-Type' => 'application/json'], $J->encode($spec)));
    die "plan: " . $res->status_line unless $res->is_success;
}
sub plan_clear { $UA->request(HTTP::Request->new(DELETE => $PLAN)) }

my @after;      # [name, id, expected (1: one post-* call, 0: none), event]

for my $c (qw(proxy inproc)) {
    # -- proceed ------------------------------------------------------------
    my $id = uniq("proceed-$c");
    my $sent = $J->encode({ id => $id, username => 'p', before => 'proceed' });
    my $res = request($SITE, POST => "/$c/member?u=$id", content => $sent);
    is($res->code, 201, "proceed: the console answered ($c)");
    is($res->header('X-Console-Body-Sha1') // '', sha1_hex($sent),
       "proceed: the console read the admin's bytes ($c)");
    my @pre = before_calls('member', 'pre-create');
    my($call) = grep { index($_->{body}, $id) >= 0 } @pre;
    ok($call, "proceed: POST $ROOT/v1/member?event=pre-create&txn=... ($c)");
    my $obj = $call ? eval { json_text($call->{body}) } : undef;
    is_deeply($obj, { id => $id, username => 'p', before => 'proceed',
                      object_type => 'member' },
              "proceed: the call's body is the admin's object with object_type ($c)");
    is($call && $call->{headers}{'content-type'}, 'application/json',
       "proceed: sent as JSON ($c)");
    push @after, ["proceed ($c)", $id, 1, 'post-create'];

    # -- enrich --------------------------------------------------------------
    $id = uniq("enrich-$c");
    $res = request($SITE, POST => "/$c/member?u=$id",
                   json => { id => $id, username => 'e', before => 'enrich' });
    my $saved = response_json($res) // {};
    is($res->code, 201, "enrich: the console answered ($c)");
    is_deeply([@$saved{qw(id username enriched_by credit_limit)}, exists $saved->{before}],
              [$id, 'e', 'receiver', 500, ''],
              "enrich: the console saved the endpoint's object ($c)")
        or diag(explain $saved);
    # what the console read parses as the object it saved: the length it
    # was told was the new body's
    cmp_ok($res->header('X-Console-Body-Length') // 0, '>', 0,
           "enrich: the console read a body ($c)");
    push @after, ["enrich ($c)", $id, 1, 'post-create', { id => $id, username => 'e',
                  enriched_by => 'receiver', credit_limit => 500, object_type => 'member' }];

    # -- refuse --------------------------------------------------------------
    $id = uniq("refuse-$c");
    $res = request($SITE, POST => "/$c/member?u=$id",
                   json => { id => $id, before => 'refuse' });
    my $ans = response_json($res) // {};
    is($res->code, 403, "refuse: 403 by default ($c)");
    is($ans->{error}, 'refused by the receiver', "refuse: the endpoint's message ($c)");
    like($ans->{txn} // '', qr/\A[0-9a-f]{32}\z/, "refuse: and the txn ($c)");
    like($res->header('Content-Type') // '', qr{^application/json}, "refuse: as JSON ($c)");
    is(console_saw($id), 0, "refuse: the console never saw it ($c)") if $c eq 'proxy';
    push @after, ["refuse ($c)", $id, 0, 'post-create'];

    $id = uniq("refuse409-$c");
    $res = request($SITE, POST => "/$c/member?u=$id",
                   json => { id => $id, before => 'refuse:409' });
    is($res->code, 409, "refuse with the endpoint's status 409 ($c)");
    push @after, ["refuse 409 ($c)", $id, 0, 'post-create'];

    # -- update and delete: the id in the call's path ---------------------------
    $id = uniq("upd-$c");
    $res = request($SITE, PUT => "/$c/member/$id", json => { email => 'u@example.com' });
    is($res->code, 200, "update proceeds ($c)");
    ($call) = before_calls("member/$id", 'pre-update');
    is_deeply($call ? json_text($call->{body}) : undef,
              { email => 'u@example.com', object_type => 'member' },
              "pre-update: POST .../v1/member/{id}?event=pre-update with the object ($c)");
    push @after, ["update ($c)", $id, 1, 'post-update'];

    $res = request($SITE, DELETE => "/$c/member/$id?nobody=1");
    is($res->code, 204, "delete proceeds ($c)");
    ($call) = before_calls("member/$id", 'pre-delete');
    is_deeply($call ? json_text($call->{body}) : undef,
              { id => $id, object_type => 'member' },
              "pre-delete: the id as an object ($c)");
    push @after, ["delete ($c)", $id, 1, 'post-delete'];

    $id = uniq("refdel-$c");
    $res = request($SITE, DELETE => "/$c/member/$id",
                   json => { id => $id, before => 'refuse' });
    is($res->code, 403, "a refused delete ($c)");
    push @after, ["refused delete ($c)", $id, 0, 'post-delete'];
}

# -- JSON-RPC: each guarded call is asked about --------------------------------
for my $c (qw(proxy inproc)) {
    my $u = uniq("rpc-$c");
    my $res = request($SITE, POST => "/$c/rpc?u=$u",
                      content => $J->encode([
                          { jsonrpc => '2.0', method => 'member.create',
                            params => [{ username => $u, before => 'enrich' }], id => 1 },
                          { jsonrpc => '2.0', method => 'member.fetch', params => [$u], id => 2 },
                          { jsonrpc => '2.0', method => 'member.update',
                            params => [{ username => $u, n => 2 }], id => 3 } ]),
                      headers => { 'X-Console-Shape' => 'jsonrpc' });
    my $ans = response_json($res) // [];
    my($r1) = grep { ref $_ eq 'HASH' && ($_->{id} // 0) == 1 } @$ans;
    is($res->code, 200, "JSON-RPC batch with before-save calls answered ($c)");
    is(($r1 // {})->{result}{enriched_by}, 'receiver',
       "member.create was enriched: the console saved the endpoint's object ($c)");
    my @pre = grep { index($_->{body}, $u) >= 0 } before_calls('member', 'pre-create');
    is(scalar @pre, 1, "one pre-create call for member.create ($c)");
    is(scalar(before_calls("member/$u", 'pre-update')), 1,
       "one pre-update call for member.update, its id from the param (username) ($c)");
    push @after, ["JSON-RPC enriched create ($c)", $u, 1, 'post-create'];

    my $v = uniq("rpcref-$c");
    $res = request($SITE, POST => "/$c/rpc?u=$v",
                   content => $J->encode({ method => 'member.create',
                       params => [{ username => $v, before => 'refuse:422' }], id => 9 }),
                   headers => { 'X-Console-Shape' => 'jsonrpc' });
    is($res->code, 422, "a refused JSON-RPC call refuses the request ($c)");
    is(console_saw($v), 0, "the console never saw it ($c)") if $c eq 'proxy';
    push @after, ["JSON-RPC refused create ($c)", $v, 0, 'post-create'];
}

# -- the endpoint fails ----------------------------------------------------------
my @faults = (
    ['garbage', 'garbage', qr/no answer/],
    ['500', 500, qr/the endpoint answered 500/],
    ['a reset', 'reset', qr/no answer/],
    ['an answer that is not JSON', { status => 200, body => 'OK' }, qr/answer: malformed JSON/],
    ['an unknown type', { status => 200, body => { type => 'maybe' } }, qr/neither "proceed" nor "refuse"/],
    ['a refusal with a 5xx', { status => 200, body => { type => 'refuse', status => 500 } }, qr/4xx/],
    ['a hang past the timeout', { hang => 3 }, qr/no answer: Timeout/i],
);
for my $c (qw(proxy inproc)) {
    for my $f (@faults) {
        my($name, $action, $why) = @$f;
        for my $open (0, 1) {
            my $path = $open ? "/$c/open/member" : "/$c/member";
            # (as the default too: libcurl tries a reused connection's
            # request once more on a new one when it was reset)
            plan_set({ path => "$ROOT/v1/member", actions => [$action],
                       default => $action });
            my $id = uniq("fault-$c-$open");
            my $t0 = Time::HiRes::time();
            my $res = request($SITE, POST => "$path?u=$id", json => { id => $id });
            my $took = Time::HiRes::time() - $t0;
            my $ans = response_json($res) // {};
            if ($open) {
                is($res->code, 201, "$name, EventTriggerBeforeFailure proceed: the request goes on ($c)");
                push @after, ["$name, failed open ($c)", $id, 1, 'post-create'];
            }
            else {
                ok($res->code == 503 && ($ans->{error} // '') =~ $why
                   && ($ans->{txn} // '') =~ /\A[0-9a-f]{32}\z/,
                   "$name: 503 with the reason and the txn ($c)")
                    or diag($res->code, ' ', $res->content);
                ok(defined $res->header('Retry-After'), "$name: with Retry-After ($c)");
                is(console_saw($id), 0, "$name: the console never saw it ($c)") if $c eq 'proxy';
                push @after, ["$name, failed closed ($c)", $id, 0, 'post-create'];
            }
            plan_clear();
            cmp_ok($took, '<', 2.5, "$name: answered within the 1 s deadline and a margin ($c, "
                   . ($open ? 'open' : 'closed') . ')');
        }
    }
}
plan_clear();

# -- a request body that is not JSON (an HTML form's) -------------------------
{
    # the endpoint gets the id and object_type alone: the form is no object
    my $bare = sub { scalar grep { ($_->{body} // '') eq '{"object_type":"member"}' }
                         before_calls('member', 'pre-create') };
    my $before = $bare->();
    my $id = uniq('form');
    my $res = request($SITE, POST => "/proxy/member?u=$id",
                      content => "username=$id&email=f%40example.com",
                      headers => { 'Content-Type' => 'application/x-www-form-urlencoded' });
    is($bare->(), $before + 1, 'a form body: the endpoint is asked with object_type alone');
    ok($res->code == 400 && console_saw($id),
       'and the request goes on to the console (which, JSON only, refuses it itself)');
    plan_set({ path => "$ROOT/v1/member", actions => [],
               default => { status => 200, body => { type => 'proceed', object => { a => 1 } } } });
    $id = uniq('formenrich');
    $res = request($SITE, POST => "/proxy/member?u=$id", content => "username=$id",
                   headers => { 'Content-Type' => 'application/x-www-form-urlencoded' });
    plan_clear();
    my $ans = response_json($res) // {};
    ok($res->code == 503 && ($ans->{error} // '') =~ /enriched a request whose body is not JSON/
       && ($ans->{txn} // '') =~ /\A[0-9a-f]{32}\z/,
       'an enrichment of a form body is a failure (503, with the txn)')
        or diag($res->code, ' ', $res->content);
    is(console_saw($id), 0, 'and the console never saw it');
}

# -- transports: chunked bodies, HTTP/2 ------------------------------------------
for my $c (qw(proxy inproc)) {
    for my $t ([0, 0], [1, 0], [0, 1], [1, 1]) {
        my($chunked, $h2) = @$t;
        my $how = ($chunked ? 'chunked' : 'Content-Length') . ', HTTP/' . ($h2 ? '2' : '1.1') . ", $c";
        my $id = uniq("tp-$c-$chunked$h2");
        my $body = qq({ "id" : "$id", "note": "caf\xc3\xa9 \\u00e9", "before": "proceed" }\n);
        my $r = curl_send(site => $SITE, path => "/$c/member?u=$id", body => $body,
                          chunked => $chunked, h2 => $h2);
        is("$r->{code} $r->{version}", '201 ' . ($h2 ? '2' : '1.1'), "proceed over $how");
        is($r->{headers}{'x-console-body-sha1'} // '', sha1_hex($body),
           "proceed over $how: the console read the bytes sent");

        $id = uniq("te-$c-$chunked$h2");
        $r = curl_send(site => $SITE, path => "/$c/member?u=$id", chunked => $chunked, h2 => $h2,
                       body => $J->encode({ id => $id, before => 'enrich', pad => 'x' x 3000 }));
        my $saved = eval { $J->decode($r->{body}) } // {};
        ok($r->{code} == 201 && ($saved->{enriched_by} // '') eq 'receiver'
           && length($saved->{pad} // '') == 3000,
           "enrich over $how: the console saved the enriched object")
            or diag($r->{code}, ' ', substr($r->{body}, 0, 300));
        my $len = $r->{headers}{'x-console-body-length'} // -1;
        cmp_ok($len, '>', 3000, "enrich over $how: the console got the whole new body");
    }
}

# -- a body over EventTriggerCaptureLimit (1M, the main server's) --------------------
for my $open (0, 1) {
    my $id = uniq("big-$open");
    my $body = $J->encode({ id => $id, pad => 'x' x (1024 * 1024 + 100) });
    my $path = $open ? "/proxy/open/member?u=$id" : "/proxy/member?u=$id";
    my $res = request($SITE, POST => $path, content => $body);
    if ($open) {
        is($res->code, 201, 'a body over the capture limit, failing open: the request goes on');
        is($res->header('X-Console-Body-Sha1') // '', sha1_hex($body),
           'and the console read all of it, byte for byte');
    }
    else {
        my $ans = response_json($res) // {};
        ok($res->code == 503 && ($ans->{error} // '') =~ /exceeds EventTriggerCaptureLimit/
           && ($ans->{txn} // '') =~ /\A[0-9a-f]{32}\z/,
           'a body over the capture limit: 503, saying so')
            or diag($res->code, ' ', substr($res->content, 0, 300));
        is(console_saw($id), 0, 'and the console never saw it');
    }
}

# -- an unguarded location ------------------------------------------------------
{
    my $id = uniq('unguarded');
    my $res = request($SITE, POST => "/proxy/application?u=$id", json => { id => $id });
    is($res->code, 201, 'an unguarded location answers');
    is(scalar(grep { index($_->{body}, $id) >= 0 } before_calls('application', 'pre-create')),
       0, 'without a before-save call');
}

# -- the after-save calls -----------------------------------------------------------
ok(marker(), 'a marker made after everything arrived');
ok(marker(site => $SITE), 'and one on the before-save site');
for my $a (@after) {
    my($name, $id, $want, $event, $body) = @$a;
    my @got = grep { my %q = parse_query($_->{query}); $q{event} eq $event
                     && $_->{path} =~ m{^\Q$ROOT\E/v1/member/} } calls_for_id($id);
    is(scalar @got, $want, "$name: " . ($want ? "one $event call" : "no $event call"));
    if ($body && @got) {
        is_deeply(json_text($got[0]{body}), $body,
                  "$name: the after-save call carries what the console saved");
    }
}

# the status page counts the decisions, in every child (shared memory)
{
    my $st = status_json() // {};
    my($site) = grep { ($_->{endpoint} // '') =~ m{/hooks/before\z} } @{ $st->{sites} // [] };
    my $b = ($site // {})->{before} // {};
    ok($site, 'the status page lists the before-save site');
    cmp_ok($b->{proceed} // 0, '>=', 10, 'proceed counted');
    cmp_ok($b->{enriched} // 0, '>=', 10, 'enriched counted');
    cmp_ok($b->{refused} // 0, '>=', 6, 'refused counted');
    cmp_ok($b->{failed_closed} // 0, '>=', scalar(@faults) * 2, 'failed closed counted');
    cmp_ok($b->{failed_open} // 0, '>=', scalar(@faults) * 2, 'failed open counted');
    ok(($b->{latency_ms}{p99} // 0) > 0 && ($b->{latency_ms}{p99} // 0) >= ($b->{latency_ms}{p50} // 0),
       'with the calls\' p50 and p99') or diag(explain $b);
    my $res = request('main', GET => '/et-status?prometheus');
    like($res->content, qr/^eventtrigger_before_total\{site="[^"]+",outcome="enriched"\} [1-9]\d*$/m,
         'and in the Prometheus text');
    $res = request('main', GET => '/et-status');
    like($res->content, qr{before-save: proceed / enriched}, 'and on the HTML page');
}

# every decision logged with its txn
my $log = do { local $/; open my $fh, '<', t_path('t_logs', 'error_log'); <$fh> };
like($log, qr/ET00071: before-save member pre-create txn=[0-9a-f]{32}: proceed, enriched \(\d+ ms\)/,
     'an enrichment is logged with its txn and latency');
like($log, qr/ET00071: before-save member pre-create txn=[0-9a-f]{32}: refuse with 409 \(\d+ ms\)/,
     'a refusal too');
like($log, qr/ET00071: before-save member pre-create txn=[0-9a-f]{32}: failed: the endpoint answered 500; refused with 503/,
     'and a failure, with the policy applied');

done_testing();
