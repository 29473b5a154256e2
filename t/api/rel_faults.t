# Faults one by one, each on an object of its own, all at the same time, on
# site et_rel (t/conf/reliability.conf.in: EventTriggerRetry 0 500ms 1s 1s
# 2s, EventTriggerTimeout 1s, no circuit breaker). The receiver's plan for
# each object's path says how its calls are answered. For each case: what
# arrived (every attempt, with one txn, the body of the object), how many
# attempts (receiver and outbox agree), in which order, and when: each gap
# between attempts is the scheduled delay +-20% jitter (plus the call's own
# time for a hang), or the Retry-After, with a generous upper slack because
# the machine is shared.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use HTTP::Date ();
use Time::HiRes ();
use ETTest qw(:all);
use ETRel qw(:all);

my $SLACK = 2.5;             # upper slack of a gap, seconds (noisy machine)
my $EARLY = 0.05;            # lower slack (clock granularity)
my $ROOT = '/hooks/rel';
my $PORT = rel_define('ET_FAULT_PORT');

# A gap of a delay d with jitter: [0.8 d, 1.2 d]; $extra is the call's own
# time (a hang until the timeout), $exact a delay without jitter.
sub jit   { my($d, $extra) = @_; $extra //= 0; [0.8 * $d + $extra - $EARLY, 1.2 * $d + $extra + $SLACK] }
sub exact { my($d) = @_; [$d - $EARLY, $d + $SLACK] }

# name, plan (for the object's path), method of the admin request, and
# what must happen: the receiver's answers in order, the outbox's final
# state (1 delivered, 2 dead), last status, gaps, errors in the log.
my @cases = (
    { name => '500 then 200', plan => [500],
      answers => ['500', '200'], state => 1, gaps => [jit(0.5)],
      log => [qr/attempt=1 status=500 .*error=server error: HTTP 500/] },
    { name => '500 with Retry-After: not honoured (only 429 and 503)',
      plan => [{ status => 500, retry_after => '3' }],
      answers => ['500 retry-after=3', '200'], state => 1, gaps => [jit(0.5)] },
    { name => '502, 408 then 200', plan => [502, 408],
      answers => ['502', '408', '200'], state => 1, gaps => [jit(0.5), jit(1)] },
    { name => 'DELETE: 504 then 200', method => 'DELETE', plan => [504],
      answers => ['504', '200'], state => 1, gaps => [jit(0.5)] },
    { name => '503 with Retry-After: 2 (seconds)',
      plan => [{ status => 503, retry_after => '2' }],
      answers => ['503 retry-after=2', '200'], state => 1, gaps => [exact(2)] },
    # the date has whole seconds: the wait is measured from the first
    # attempt's arrival to that date
    { name => '503 with Retry-After as an HTTP-date',
      plan => sub { my $c = shift; $c->{date} = int(Time::HiRes::time()) + 4;
                    [{ status => 503, retry_after => HTTP::Date::time2str($c->{date}) }] },
      answers => [qr/^503 retry-after=\w{3}, /, '200'], state => 1,
      gaps => sub { my($c, @att) = @_; my $w = $c->{date} - $att[0]{time};
                    [[$w - $EARLY, $w + $SLACK]] } },
    { name => '503, then 503 with a Retry-After shorter than the schedule',
      plan => [503, { status => 503, retry_after => '0' }],
      answers => ['503', '503 retry-after=0', '200'], state => 1,
      gaps => [jit(0.5), jit(1)] },
    { name => '429 twice, then 200', plan => [429, 429],
      answers => ['429', '429', '200'], state => 1, gaps => [jit(0.5), jit(1)] },
    { name => '429 with Retry-After: 1', plan => [{ status => 429, retry_after => '1' }],
      answers => ['429 retry-after=1', '200'], state => 1, gaps => [exact(1)] },
    { name => 'hang past the timeout (1s), then 200', plan => [{ hang => 4 }],
      answers => ['hang 4s then 200', '200'], state => 1,
      # the call runs until its 1s timeout, then the 500ms delay
      gaps => [jit(0.5, 1 - 0.1)],
      log => [qr/attempt=1 status=0 .*error=no answer: .*(?:[Tt]imeout|timed out)/] },
    { name => 'connection reset (RST)', plan => ['reset'],
      answers => ['reset', '200'], state => 1, gaps => [jit(0.5)], fresh => 1,
      log => [qr/attempt=1 status=0 .*error=no answer: .*(?:reset|Recv failure|Empty reply)/i] },
    { name => 'garbage instead of HTTP', plan => ['garbage'],
      answers => ['garbage', '200'], state => 1, gaps => [jit(0.5)],
      log => [qr/attempt=1 status=0 .*error=no answer: /] },
    { name => '404: dead at once', plan => [404],
      answers => ['404'], state => 2, last_status => 404,
      error => qr/refused by the receiver: HTTP 404, answer: \{"error": "injected 404"\}/ },
    { name => '301: dead at once, the redirect not followed',
      plan => [{ status => 301, location => "http://127.0.0.1:$PORT/elsewhere" }],
      answers => ["301 location=http://127.0.0.1:$PORT/elsewhere"], state => 2,
      last_status => 301, error => qr/redirect not followed: HTTP 301/ },
    { name => '503 every time: dead after the 5 attempts of the schedule',
      plan => { actions => [], default => 503 },
      answers => [('503') x 5], state => 2, last_status => 503,
      gaps => [jit(0.5), jit(1), jit(1), jit(2)],
      error => qr/out of attempts: HTTP 503/ },
);

# per case: answers, one txn (= the outbox's), attempts, state/status,
# gaps, error or log lines, body
plan tests => 1 + 8 * @cases + 3;

my $receiver = start_fault_receiver(truncate => 1);
my $mark = errlog_mark();

# Retry-After beyond 1 hour is clamped: the event waits 1h, not a day.
my $clamp_id = uniq('rel-clamp');
set_plan({ path => "$ROOT/v1/member/$clamp_id",
           actions => [{ status => 503, retry_after => '86400' }] });

for my $c (@cases) {
    $c->{id} = uniq('rel');
    my $plan = ref $c->{plan} eq 'CODE' ? $c->{plan}->($c) : $c->{plan};
    $plan = { actions => $plan } if ref $plan eq 'ARRAY';
    $plan->{default} = 200 unless exists $plan->{default};
    set_plan({ %$plan, path => "$ROOT/v1/member/$c->{id}" });
}

# The reset case wants its first attempt on a fresh connection (see the
# end of the file for a reused one): it goes first, the others after it
# arrived.
my @order = ((grep { $_->{fresh} } @cases), (grep { !$_->{fresh} } @cases));
my $made = 0;
for my $c (@order) {
    my $res = ($c->{method} // '') eq 'DELETE'
        ? request('et_rel', DELETE => "/inproc/member/$c->{id}")
        : request('et_rel', POST => '/inproc/member',
                  json => { id => $c->{id}, case => $c->{name} });
    $made++ if $res->is_success;
    wait_attempts($c->{id}, n => 1, timeout => 10) if $c->{fresh};
}
my $res = request('et_rel', POST => '/inproc/member', json => { id => $clamp_id });
$made++ if $res->is_success;
is($made, @cases + 1, 'the console saved every object');

# Wait for every case to be over (delivered or dead) in the outbox.
for my $c (@cases) {
    $c->{row} = wait_row($c->{id}, $c->{state}, 30);
}

for my $c (@cases) {
    my $n = $c->{name};
    my $row = $c->{row} // {};
    my @att = attempts_of($c->{id});
    my $diag = "$n:\n" . fmt_attempts(@att) . "\n" . explain($row);

    # what arrived: the planned answers, in order
    my @answers = map { $_->{answer} // '' } @att;
    my $ok = @answers == @{ $c->{answers} };
    for my $i (0 .. $#{ $c->{answers} }) {
        my $want = $c->{answers}[$i];
        $ok &&= ref $want ? ($answers[$i] // '') =~ $want : ($answers[$i] // '') eq $want;
    }
    ok($ok, "$n: the receiver's answers, in order") or diag($diag);

    my %txns = map { (txn_of($_) => 1) } @att;
    ok(keys %txns == 1 && (keys %txns)[0] eq ($row->{txn} // ''),
       "$n: every attempt carries the event's txn") or diag($diag);

    is($row->{state}, $c->{state},
       "$n: " . ($c->{state} == 1 ? 'delivered' : 'dead letter')) or diag($diag);
    is($row->{attempts}, scalar @{ $c->{answers} },
       "$n: the outbox counts one attempt per call") or diag($diag);
    is($row->{last_status}, $c->{last_status} // 200, "$n: the last status is kept")
        or diag($diag);

    # when
    my @bad;
    my @gaps = map { $att[$_]{time} - $att[$_ - 1]{time} } 1 .. $#att;
    my $want = ref $c->{gaps} eq 'CODE' ? (@att ? $c->{gaps}->($c, @att) : [])
             : $c->{gaps} // [];
    for my $i (0 .. $#$want) {
        my($lo, $hi) = @{ $want->[$i] };
        push @bad, sprintf('gap %d: %.3fs not in [%.3f, %.3f]', $i + 1,
                           $gaps[$i] // -1, $lo, $hi)
            unless in_range($gaps[$i], $lo, $hi);
    }
    ok(!@bad, "$n: attempts on the schedule") or diag(join("\n", @bad) . "\n$diag");

    # why: the dead letter's error, or the log of the failed attempts
    if ($c->{error}) {
        like($row->{last_error} // '', $c->{error}, "$n: the dead letter says why");
    }
    else {
        my $txn = $row->{txn} // 'none';
        my @lines = errlog_since($mark, qr/ET01001: .*txn=\Q$txn\E /);
        my @miss = grep { my $re = $_; !grep { /$re/ } @lines } @{ $c->{log} // [] };
        ok(@lines == @att && !@miss, "$n: ET01001 logs each attempt, with the error")
            or diag(join('', @lines) . "missing: @miss");
    }

    # the body, on the last call
    my $body = @att ? eval { json_text($att[-1]{body}) } : undef;
    ok($body && ($body->{id} // '') eq $c->{id} && ($body->{object_type} // '') eq 'member',
       "$n: the call carries the object") or diag($diag);
}

# -- Retry-After: 86400 is clamped to 1 hour --------------------------------------
{
    my $row;
    wait_for(sub { $row = row_of($clamp_id); $row && $row->{attempts} >= 1
                   && !$row->{lease_until} }, 20);
    my @att = attempts_of($clamp_id);
    my $wait = $row && @att ? $row->{due} / 1e6 - $att[0]{time} : -1;
    ok(in_range($wait, 3600 - 5, 3600 + 5),
       'Retry-After: 86400 on a 503 is clamped to 1 hour')
        or diag(sprintf("waits %.1fs\n", $wait) . explain($row));
    # bring it forward (the test will not wait an hour): delivered at once
    outbox("UPDATE et_event SET due = 0 WHERE txn = " . sql_quote($row->{txn} // ''));
    $row = wait_row($clamp_id, 1, 20);
    is($row && $row->{attempts}, 2, 'Retry-After clamp: delivered on the second attempt');
}

# -- a reset on a reused (keep-alive) connection -----------------------------------
# libcurl sends the request again, once, on a fresh connection when a reused
# one dies before any byte of the answer; so the receiver sees two requests
# (same txn) for one attempt. At-least-once allows it; the test shows it.
{
    my $warm = uniq('rel-warm');
    request('et_rel', POST => '/inproc/member', json => { id => $warm });
    wait_row($warm, 1, 20);
    my $id = uniq('rel-reused');
    set_plan({ path => "$ROOT/v1/member/$id", actions => ['reset'], default => 200 });
    request('et_rel', POST => '/inproc/member', json => { id => $id });
    my $row = wait_row($id, 1, 20);
    my @att = attempts_of($id);
    my %txns = map { (txn_of($_) => 1) } @att;
    ok($row && $row->{state} == 1 && keys %txns == 1
       && $att[0]{answer} eq 'reset' && $att[-1]{answer} eq '200'
       && $row->{attempts} <= 2 && @att <= 2,
       'reset on a reused connection: delivered with one txn, at most one repeat')
        or diag(fmt_attempts(@att) . "\n" . explain($row));
    note(sprintf 'reset on a reused connection: %d request(s), %d attempt(s)',
         scalar @att, $row->{attempts} // 0);
}

stop_proc($receiver);
