# Trace context (W3C Trace Context) and headers from the admin's request
# (EventTriggerHeader NAME expr=EXPRESSION), site et_trace
# (t/conf/trace.conf.in):
# - the admin's traceparent is carried to every attempt: the same trace id,
#   a new parent id per attempt (a retry after a 503), tracestate as sent;
#   the trace id is in ET01001, etctl show and the status page's recent
#   failures;
# - without a traceparent (or with an invalid one) the event starts a trace
#   of its own, one per admin request (a JSON-RPC batch's events share it);
# - REMOTE_USER (basic auth) and request headers on every attempt; an empty
#   value sends no header; a value with CR LF is not sent.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use ETTest qw(:all);
use ETRel qw(errlog_mark errlog_since etctl);
use ETOps qw(ops_define);
use Digest::SHA qw(sha1_base64);
use File::Path qw(make_path);
use HTTP::Request;
use JSON::PP ();
use MIME::Base64 qw(encode_base64);

plan tests => 13 + 12 + 8 + 7 + 4 + 4;

my $J = JSON::PP->new->canonical;
my $PORT = ops_define('ET_TRACE_RECEIVER_PORT');
my $LOG = receiver_log();
my $ROOT = '/hooks/trace';
my $TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
my $PARENT = '00f067aa0ba902b7';
my $STATE = 'rojo=00f067aa0ba902b7,congo=t61rcWkgMzE';

# basic auth for /inproc/: alice (mod_authn_file reads {SHA} on any platform)
my $dir = t_path('t_state', 'trace');
make_path($dir);
{
    open my $fh, '>', "$dir/htpasswd" or die "$dir/htpasswd: $!";
    print $fh 'alice:{SHA}' . sha1_base64('wonderland') . "=\n";
    close $fh;
}
my %ALICE = (Authorization => 'Basic ' . encode_base64('alice:wonderland', ''));

start_console();
start_receiver(port => $PORT, log => $LOG, truncate => 1);

sub set_plan {
    my $res = ETTest::ua()->request(HTTP::Request->new(
        PUT => "http://127.0.0.1:$PORT/_plan",
        ['Content-Type' => 'application/json'], $J->encode(shift)));
    die 'the receiver refused the plan: ' . $res->status_line unless $res->is_success;
}

# the trace id logged with the admin request tagged $tag (CustomLog of
# t/conf/trace.conf.in), '' if none
sub access_trace {
    my $tag = shift;
    my $file = t_path('t_logs', 'trace_access.log');
    my $got = '';
    wait_for(sub {
        open my $fh, '<', $file or return 0;
        while (<$fh>) { $got = $1 if /^\Q$tag\E trace=(\S+)$/ }
        return $got ne '';
    }, 10);
    return $got;
}

sub row_of {
    my $id = shift;
    return outbox('SELECT txn, state, attempts, traceparent, tracestate, headers '
                  . 'FROM et_event WHERE oid = ' . sql_quote($id))->[0];
}

# traceparent of a call -> (trace id, parent id, flags), or () if invalid
sub tp {
    my $v = shift->{headers}{traceparent} // '';
    return $v =~ /\A00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})\z/
        && $1 !~ /\A0+\z/ && $2 !~ /\A0+\z/ ? ($1, $2, $3) : ();
}

# -- the admin's traceparent, to every attempt --------------------------------------
{
    my $id = uniq('traced');
    my $tag = uniq('tag');
    set_plan({ path => "$ROOT/v1/member/$id", actions => [503], default => 200 });
    my $mark = errlog_mark();
    my $res = request('et_trace', POST => '/proxy/member', json => { id => $id },
                      headers => { traceparent => "00-$TRACE-$PARENT-01",
                                   'X-Test-Tag' => $tag,
                                   tracestate => $STATE,
                                   'X-Request-Id' => 'req-42' });
    is($res->code, 201, 'traceparent: create answered');
    my $calls = wait_calls($id, n => 2, log => $LOG, timeout => 20);
    is(scalar @$calls, 2, 'traceparent: a 503, then a second attempt');
    my @t = map { [tp($_)] } @$calls;
    ok((grep { @$_ == 3 } @t) == 2, 'traceparent: each attempt sends a valid one')
        or diag(explain [map { $_->{headers}{traceparent} } @$calls]);
    is_deeply([map { $_->[0] } @t], [$TRACE, $TRACE],
              'traceparent: every attempt has the admin\'s trace id');
    is_deeply([map { $_->[2] } @t], ['01', '01'], 'traceparent: sampled, as the admin\'s');
    isnt($t[0][1] // '', $PARENT, 'traceparent: the first attempt has a parent id of its own');
    ok(defined $t[1][1] && $t[1][1] ne ($t[0][1] // '') && $t[1][1] ne $PARENT,
       'traceparent: the retry has a new parent id') or diag(explain \@t);
    is_deeply([map { $_->{headers}{tracestate} } @$calls], [$STATE, $STATE],
              'tracestate: passed on unchanged on every attempt');
    is_deeply([map { $_->{headers}{'x-request-id'} } @$calls], ['req-42', 'req-42'],
              'expr header: %{HTTP:X-Request-Id} on every attempt');
    my $row;
    wait_for(sub { $row = row_of($id); $row && $row->{state} == 1 }, 20);
    is($row && $row->{traceparent}, "00-$TRACE-$PARENT-01",
       'the outbox keeps the admin\'s traceparent');
    my @log;
    wait_for(sub { @log = errlog_since($mark, qr/ET01001: .*txn=\Q$row->{txn}\E /); @log >= 2 }, 10);
    ok(@log == 2 && !grep({ !/ trace=\Q$TRACE\E(?: |$)/ } @log),
       'ET01001: each attempt\'s line has trace=') or diag(explain \@log);
    my($rc, $out, $err) = etctl('show', $row->{txn});
    like($out, qr/^trace:\s+\Q$TRACE\E$/m, 'etctl show: the trace id') or diag($out . $err);
    is(access_trace($tag), $TRACE, 'the request note eventtrigger-trace: the trace id');
}

# -- none, or an invalid one: a trace of the event's own -----------------------------
{
    my($a, $b, $c) = (uniq('fresh'), uniq('fresh'), uniq('invalid'));
    my $tag = uniq('tag');
    is(request('et_trace', POST => '/proxy/member', json => { id => $a },
               headers => { 'X-Test-Tag' => $tag })->code, 201,
       'no traceparent: create answered');
    request('et_trace', POST => '/proxy/member', json => { id => $b });
    my $bad = '00-' . uc($TRACE) . "-$PARENT-01";            # uppercase: invalid
    request('et_trace', POST => '/proxy/member', json => { id => $c },
            headers => { traceparent => $bad, tracestate => $STATE });
    my($ca) = @{ wait_calls($a, log => $LOG) };
    my($cb) = @{ wait_calls($b, log => $LOG) };
    my($cc) = @{ wait_calls($c, log => $LOG) };
    my @ta = $ca ? tp($ca) : ();
    my @tb = $cb ? tp($cb) : ();
    my @tc = $cc ? tp($cc) : ();
    ok(@ta == 3, 'no traceparent: the call has a valid one')
        or diag(explain $ca && $ca->{headers});
    is($ta[2] // '', '01', 'no traceparent: the trace is sampled');
    ok(@tb == 3 && $tb[0] ne ($ta[0] // ''), 'no traceparent: each request starts a trace of its own');
    my $row = row_of($a);
    like($row && $row->{traceparent} // '', qr/\A00-\Q@{[$ta[0] \/\/ 'x']}\E-[0-9a-f]{16}-01\z/,
         'no traceparent: the outbox keeps the trace the module started');
    ok(@tc == 3 && lc($tc[0]) ne lc($TRACE), 'an invalid traceparent: replaced by a new trace')
        or diag(explain $cc && $cc->{headers});
    ok($cc && !exists $cc->{headers}{tracestate}, 'an invalid traceparent: its tracestate is not passed on');
    is(access_trace($tag), $ta[0] // 'none',
       'no traceparent: the request note eventtrigger-trace has the trace started');
    ok($ca && !exists $ca->{headers}{tracestate}, 'no traceparent: no tracestate');

    # a later version: read as 00, stored (and sent on) as 00
    my $v1 = uniq('v1');
    request('et_trace', POST => '/proxy/member', json => { id => $v1 },
            headers => { traceparent => "01-$TRACE-$PARENT-01-future" });
    my($c1) = @{ wait_calls($v1, log => $LOG) };
    my $r1 = row_of($v1);
    ok($c1 && ((tp($c1))[0] // '') eq $TRACE && $r1 && ($r1->{traceparent} // '') eq "00-$TRACE-$PARENT-01",
       'a later version\'s traceparent: its trace goes on, kept as version 00')
        or diag(explain [$c1 && $c1->{headers}, $r1]);
    ok($ca && !exists $ca->{headers}{'x-admin-user'} && !exists $ca->{headers}{'x-request-id'},
       'expr headers: an empty value sends no header') or diag(explain $ca && $ca->{headers});
    is($ca && $ca->{headers}{'x-tenant'}, 'acme', 'the fixed EventTriggerHeader still goes');
}

# -- REMOTE_USER through basic auth --------------------------------------------------
{
    my $id = uniq('alice');
    my $res = request('et_trace', POST => '/inproc/member', json => { id => $id },
                      headers => { %ALICE, 'X-Request-Id' => 'req-7',
                                   'X-Note' => 'changed%20by%20alice' });
    is($res->code, 201, 'basic auth: create answered');
    my($call) = @{ wait_calls($id, log => $LOG) };
    my $h = $call ? $call->{headers} : {};
    is($h->{'x-admin-user'}, 'alice', 'expr header: %{REMOTE_USER} of basic auth');
    is($h->{'x-request-id'}, 'req-7', 'expr header: a request header');
    is($h->{'x-note'}, 'changed by alice', 'expr header: an expression with a function');
    my $row = row_of($id);
    is($row && $row->{headers},
       "X-Admin-User: alice\nX-Request-Id: req-7\nX-Note: changed by alice",
       'the outbox keeps the evaluated headers');
    my(undef, $show) = etctl('show', $row ? $row->{txn} : 'none');
    like($show // '', qr/^header:\s+X-Admin-User: alice\nheader:\s+X-Request-Id: req-7\n/m,
         'etctl show: the headers the event was stored with');

    my $nope = uniq('nobody');
    $res = request('et_trace', POST => '/inproc/member', json => { id => $nope },
                   headers => { Authorization => 'Basic ' . encode_base64('alice:wrong', '') });
    is($res->code, 401, 'a wrong password is refused');

    # CR LF in a value: the header is not sent, the event is
    my $crlf = uniq('crlf');
    my $mark = errlog_mark();
    request('et_trace', POST => '/inproc/member', json => { id => $crlf },
            headers => { %ALICE, 'X-Note' => 'a%0d%0aX-Injected:%201' });
    my($cc) = @{ wait_calls($crlf, log => $LOG) };
    ok($cc && !exists $cc->{headers}{'x-note'} && !exists $cc->{headers}{'x-injected'}
       && ($cc->{headers}{'x-admin-user'} // '') eq 'alice'
       && errlog_since($mark, qr/ET00123: EventTriggerHeader X-Note: the value holds a control character/),
       'a value with CR LF: that header is not sent (ET00123), the others are')
        or diag(explain $cc && $cc->{headers});
}

# -- a JSON-RPC batch: one trace for its events ----------------------------------------
{
    my($m, $k) = (uniq('rpcm'), uniq('rpck'));
    my $res = request('et_trace', POST => '/inproc/rpc',
                      content => $J->encode([
                          { jsonrpc => '2.0', method => 'member.create',
                            params => [{ username => $m }], id => 'a' },
                          { jsonrpc => '2.0', method => 'key.delete', params => [$k], id => 'b' },
                      ]),
                      headers => { %ALICE, 'X-Console-Shape' => 'jsonrpc',
                                   traceparent => "00-$TRACE-$PARENT-00" });
    is($res->code, 200, 'JSON-RPC batch answered');
    my($cm) = @{ wait_calls($m, log => $LOG) };
    my($ck) = @{ wait_calls($k, log => $LOG) };
    my @tm = $cm ? tp($cm) : ();
    my @tk = $ck ? tp($ck) : ();
    is_deeply([$tm[0], $tk[0]], [$TRACE, $TRACE], 'JSON-RPC: each event of the batch carries the trace');
    is_deeply([$tm[2], $tk[2]], ['00', '00'], 'JSON-RPC: not sampled stays not sampled');
    ok(@tm == 3 && @tk == 3 && $tm[1] ne $tk[1], 'JSON-RPC: each call has its own parent id');
    is_deeply([map { $_ && $_->{headers}{'x-admin-user'} } $cm, $ck], ['alice', 'alice'],
              'JSON-RPC: each event carries REMOTE_USER');

    # without a traceparent, the batch's events share the trace started for it
    my($m2, $k2) = (uniq('rpcm'), uniq('rpck'));
    request('et_trace', POST => '/inproc/rpc',
            content => $J->encode([
                { jsonrpc => '2.0', method => 'member.create', params => [{ username => $m2 }], id => 1 },
                { jsonrpc => '2.0', method => 'key.delete', params => [$k2], id => 2 },
            ]),
            headers => { %ALICE, 'X-Console-Shape' => 'jsonrpc' });
    ($cm) = @{ wait_calls($m2, log => $LOG) };
    ($ck) = @{ wait_calls($k2, log => $LOG) };
    @tm = $cm ? tp($cm) : ();
    @tk = $ck ? tp($ck) : ();
    ok(@tm == 3 && @tk == 3 && $tm[0] eq $tk[0] && $tm[0] ne $TRACE,
       'JSON-RPC without traceparent: one new trace for the batch') or diag(explain [\@tm, \@tk]);
    ok(defined $cm && !exists $cm->{headers}{'x-request-id'},
       'JSON-RPC: no X-Request-Id in the request, none on the call');
}

# -- a before-save call: the request's trace and headers as well ---------------------
{
    my $id = uniq('app');
    my $res = request('et_trace', POST => '/inproc/application', json => { id => $id },
                      headers => { %ALICE, 'X-Request-Id' => 'req-before',
                                   traceparent => "00-$TRACE-$PARENT-01" });
    is($res->code, 201, 'before-save: create answered');
    my($after) = @{ wait_calls($id, log => $LOG) };
    my($before) = grep {
        ($_->{query} // '') =~ /event=pre-create/
            && ((eval { json_text($_->{body}) } // {})->{id} // '') eq $id
    } calls($LOG);
    my @tb = $before ? tp($before) : ();
    my @ta = $after ? tp($after) : ();
    ok(@tb == 3 && $tb[0] eq $TRACE && @ta == 3 && $ta[0] eq $TRACE,
       'before-save: the call before and the call after are in the admin\'s trace')
        or diag(explain [$before && $before->{headers}, $after && $after->{headers}]);
    ok(@tb == 3 && @ta == 3 && $tb[1] ne $ta[1] && $tb[1] ne $PARENT,
       'before-save: a span of its own');
    is_deeply([map { $_ && $_->{headers}{'x-admin-user'} } $before, $after], ['alice', 'alice'],
              'before-save: REMOTE_USER on the call before and the call after');
}

# -- the status page's recent failures -----------------------------------------------
{
    my $id = uniq('dead');
    set_plan({ path => "$ROOT/v1/member/$id", actions => [], default => 400 });
    request('et_trace', POST => '/proxy/member', json => { id => $id },
            headers => { traceparent => "00-$TRACE-$PARENT-01" });
    my $row;
    wait_for(sub { $row = row_of($id); $row && $row->{state} == 2 }, 20);
    is($row && $row->{state}, 2, 'a 400: dead');
    my $st = status_json() // {};
    my($f) = grep { $_->{txn} eq ($row->{txn} // '') } @{ $st->{recent_failures} || [] };
    is($f && $f->{trace}, $TRACE, 'status page (JSON): the failure\'s trace id')
        or diag(explain $st->{recent_failures});
    my $html = request('main', GET => '/et-status')->decoded_content // '';
    like($html, qr/<th>trace<\/th>/, 'status page (HTML): a trace column');
    like($html, qr/\Q$row->{txn}\E.*?<code>\Q$TRACE\E<\/code>/s,
         'status page (HTML): the failure\'s trace id');
}
