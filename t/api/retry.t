# Delivery outcomes: a 503 is retried per EventTriggerRetry with the same
# txn until the receiver takes it; an endpoint where nothing listens is
# tried per the schedule and the event goes dead; a 400 is dead at once; a
# 429 is retried. The outbox and the status page tell each outcome.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use ETTest qw(:all);

plan tests => 6 + 4 + 3 + 3 + 2;

start_console();

sub row_of {
    my $id = shift;
    return outbox("SELECT state, attempts, last_status, last_error, error "
                  . "FROM et_event WHERE oid = " . sql_quote($id))->[0];
}

sub txns {
    my %t = map { my %q = parse_query($_->{query}); ($q{txn} // '' => 1) } @_;
    return keys %t;
}

my $status_before = status_json();

# -- 503, then 200: retried with the same txn -------------------------------------
# et_json: EventTriggerRetry 0 500ms 1s 1s 1s
{
    my $r = start_receiver(truncate => 1, status => 503);
    my $id = uniq('retry');
    my $res = request('et_json', POST => '/proxy/member', json => { id => $id });
    is($res->code, 201, '503: create answered');
    my $calls = wait_calls($id, n => 2, timeout => 20);
    is(scalar @$calls, 2, '503: the event was tried again');
    stop_proc($r);
    $r = start_receiver(status => 200);

    my $row;
    wait_for(sub { $row = row_of($id); $row && $row->{state} == 1 }, 20);
    my @calls = calls_for_id($id);
    is($row && $row->{state}, 1, '503: delivered once the receiver took it')
        or diag(explain $row);
    is($row && $row->{attempts}, scalar @calls, '503: one attempt per call')
        or diag(explain [$row, \@calls]);
    is(scalar(txns(@calls)), 1, '503: every attempt carries the same txn');
    my $gap = @calls >= 2 ? $calls[1]{time} - $calls[0]{time} : 0;
    cmp_ok($gap, '>=', 0.25, '503: the second attempt waited (500ms, jitter)')
        or diag("gap: $gap");
    stop_proc($r);
}

# -- nothing listens: three attempts (0 200ms 200ms), then dead ---------------------
{
    my $id = uniq('unreach');
    my $res = request('et_unreach', PUT => "/inproc/key/$id", json => {});
    is($res->code, 200, 'unreachable: update answered');
    my $row;
    wait_for(sub { $row = row_of($id); $row && $row->{state} == 2 }, 30);
    is($row && $row->{state}, 2, 'unreachable: the event is dead') or diag(explain $row);
    is($row && $row->{attempts}, 3, 'unreachable: after the three attempts of the schedule');
    ok($row && length($row->{last_error} // ''), 'unreachable: the last error is kept')
        or diag(explain $row);
}

# -- 400: dead at once; 429: retried (et_refuse: 0 200ms 200ms 200ms) -------------
{
    my $log = receiver_log('-refuse');
    my $port = define('ET_RECEIVER2_PORT');
    my $r = start_receiver(port => $port, log => $log, truncate => 1, status => 400);
    my $id = uniq('refused');
    my $res = request('et_refuse', DELETE => "/proxy/member/$id");
    is($res->code, 200, '400: delete answered');
    my $row;
    wait_for(sub { $row = row_of($id); $row && $row->{state} == 2 }, 20);
    is_deeply([map { $row && $row->{$_} } qw(state attempts last_status)], [2, 1, 400],
              '400: dead after one attempt, status kept') or diag(explain $row);
    # dead: no attempt is left that could make another call
    is(scalar calls_for_id($id, $log), 1, '400: exactly one call');
    stop_proc($r);

    $r = start_receiver(port => $port, log => $log, status => 429);
    $id = uniq('busy');
    $res = request('et_refuse', POST => '/inproc/member', json => { id => $id });
    is($res->code, 201, '429: create answered');
    wait_for(sub { $row = row_of($id); $row && $row->{state} == 2 }, 20);
    my @calls = calls_for_id($id, $log);
    is_deeply([map { $row && $row->{$_} } qw(state attempts last_status)], [2, 4, 429],
              '429: retried through the schedule, then dead') or diag(explain $row);
    is(scalar @calls, 4, '429: four calls, one per attempt');
    stop_proc($r);
}

my $status_after = status_json();
ok($status_after, 'the status page answers');
cmp_ok(($status_after->{dead} // 0) - ($status_before->{dead} // 0), '>=', 3,
       'the status page counts the dead events');
