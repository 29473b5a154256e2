# Dead letters and replay, on site et_dead (t/conf/reliability.conf.in:
# EventTriggerRetry 0 300ms 300ms, no circuit breaker).
#
# Refused (404, 410, 400), redirected (301) and out-of-attempts (503)
# events are kept with their last status and a bounded copy of the answer;
# etctl lists and shows them and puts them back in line (one by txn, or all
# since a time); so does a POST to the status handler, which refuses a
# foreign Origin (403). A replayed event is sent again with its original
# txn. A dead letter does not hold back the later events of its object.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use ETTest qw(:all);
use ETRel qw(:all);

my $ROOT = '/hooks/dead';

plan tests => 32;

my $receiver = start_fault_receiver(truncate => 1);
my $mark = errlog_mark();

# make(tag, actions, [default]) -> id: an object whose create gets these answers
sub make {
    my($tag, $actions, $default, %body) = @_;
    my $id = uniq("dead-$tag");
    set_plan({ path => "$ROOT/v1/member/$id", actions => $actions,
               default => $default // 200 });
    my $res = request('et_dead', POST => '/inproc/member', json => { id => $id, %body });
    die "console: " . $res->status_line unless $res->code == 201;
    return $id;
}

sub calls_ok {
    my($id) = @_;
    return grep { ($_->{answer} // '') eq '200' } attempts_of($id);
}

# -- dead letters -------------------------------------------------------------------
my $long = 'x' x 5000;
my $a404 = make('404', [{ status => 404, body => { error => 'no such member', pad => $long } }]);
my $a301 = make('301', [{ status => 301, location => 'http://example.invalid/' }]);
my $a503 = make('503', [], 503);
my %row;
$row{$_} = wait_row($_, 2, 20) for $a404, $a301, $a503;

is_deeply([map { [$row{$_}{attempts}, $row{$_}{last_status}] } $a404, $a301, $a503],
          [[1, 404], [1, 301], [3, 503]],
          'dead: 404 and 301 after one attempt, 503 after the three of the schedule')
    or diag(explain \%row);
is(scalar(attempts_of($a503)), 3, 'dead: the receiver got three calls for the 503 one');
my $err = $row{$a404}{last_error} // '';
like($err, qr/^refused by the receiver: HTTP 404, answer: \{"error": "no such member", "pad": "x+/,
     'dead: the 404 keeps the status and the start of the answer');
cmp_ok(length $err, '<=', 300, 'dead: the copy of the answer is bounded (' . length($err) . ' bytes)');
like($row{$a301}{last_error} // '', qr/redirect not followed: HTTP 301/, 'dead: the 301 says why');
like($row{$a503}{last_error} // '', qr/out of attempts: HTTP 503/, 'dead: the 503 ran out of attempts');
ok(errlog_count($mark, qr/ET01001: dead letter txn=\Q$row{$a404}{txn}\E .*status=404/),
   'dead: ET01001 logs the dead letter');

# -- etctl list dead, show -------------------------------------------------------------
my($rc, $out, $stderr) = etctl('list', 'dead');
is($rc, 0, 'etctl list dead: exit 0') or diag($stderr);
my %line = map { my @f = split /\t/; ($f[0] => \@f) } grep { /\t/ } split /\n/, $out;
my @want = ([$a404, 1, 404], [$a301, 1, 301], [$a503, 3, 503]);
my @miss = grep {
    my($id, $att, $st) = @$_;
    my $f = $line{ $row{$id}{txn} } || [];
    !($f->[1] eq 'dead' && $f->[3] eq 'member' && $f->[4] eq 'post-create'
      && $f->[5] eq $id && $f->[6] == $att && $f->[7] == $st)
} @want;
is(scalar @miss, 0, 'etctl list dead: each dead letter with its id, attempts and status')
    or diag($out);
($rc, $out) = etctl('list', 'dead', '-n', '1');
is(scalar(grep { /\t/ } split /\n/, $out), 2, 'etctl list dead -n 1: a header and one event')
    or diag($out);

($rc, $out, $stderr) = etctl('show', $row{$a404}{txn});
like($out, qr{^state:\s+dead\n.*^call:\s+PUT http://127\.0\.0\.1:\d+\Q$ROOT\E/v1/member/\Q$a404\E\?event=post-create&txn=\Q$row{$a404}{txn}\E\n.*^last status:\s+404\n}ms,
     'etctl show: state, call and last status') or diag($out . $stderr);
like($out, qr/\{"id":\s*"\Q$a404\E".*"object_type":"member"\}/s, 'etctl show: the body');
($rc, undef, $stderr) = etctl('show', 'f' x 32);
ok($rc != 0 && $stderr =~ /no event with txn/, 'etctl show: an unknown txn is an error')
    or diag($stderr);

# -- etctl replay TXN ---------------------------------------------------------------------
($rc, $out, $stderr) = etctl('replay', $row{$a404}{txn});
like($out, qr/^1 event back in line$/m, 'etctl replay TXN: one back in line') or diag($out . $stderr);
my $r = wait_row($a404, 1, 20);
my @ok = calls_ok($a404);
ok($r && @ok == 1 && txn_of($ok[0]) eq $row{$a404}{txn},
   'etctl replay TXN: delivered, with its original txn') or diag(fmt_attempts(attempts_of($a404)));
is($r && $r->{attempts}, 1, 'etctl replay TXN: attempts start again');
($rc, undef, $stderr) = etctl('replay', $row{$a404}{txn});
ok($rc == 1 && $stderr =~ /is not a dead letter/, 'etctl replay: a delivered event is not replayed')
    or diag($stderr);

# -- etctl replay --since ----------------------------------------------------------------------
# both others were captured after $a404 (and the receiver now takes them)
set_plan({ path => "$ROOT/v1/member/$a503", actions => [], default => 200 });
my $since = outbox("SELECT created FROM et_event WHERE txn = " . sql_quote($row{$a301}{txn}))
    ->[0]{created};
($rc, $out, $stderr) = etctl('replay', '--since', int($since / 1e6));
like($out, qr/^2 events back in line$/m, 'etctl replay --since TIME: the two later ones')
    or diag($out . $stderr);
my @back = map { wait_row($_, 1, 20) } $a301, $a503;
sub replayed_ok {
    my @ids = @_;
    my @bad = grep { my @c = calls_ok($_);
                     @c != 1 || txn_of($c[0]) ne $row{$_}{txn} } @ids;
    diag(join "\n", map { "$_:\n" . fmt_attempts(attempts_of($_)) } @bad) if @bad;
    return !@bad;
}
ok(!grep({ !$_ } @back) && replayed_ok($a301, $a503),
   'etctl replay --since: both delivered with their original txns');

# -- POST replay on the status handler ------------------------------------------------------------
my $d410 = make('410', [410]);
my $e400 = make('400', [400]);
my $f422 = make('422', [422]);
$row{$_} = wait_row($_, 2, 20) for $d410, $e400, $f422;
my $host = site_url('main');                       # http://127.0.0.1:PORT

sub replay_post {
    my($form, %h) = @_;
    return request('main', POST => '/et-status', content => $form,
                   headers => { 'Content-Type' => 'application/x-www-form-urlencoded', %h });
}

my $res = replay_post("replay=$row{$d410}{txn}", Origin => 'http://attacker.example');
is($res->code, 403, 'POST replay with a foreign Origin: 403');
is(row_of($d410)->{state}, 2, 'POST replay with a foreign Origin: still dead');
ok(errlog_count($mark, qr/ET00052:/), 'POST replay with a foreign Origin: ET00052 logged');

$res = replay_post("replay=$row{$d410}{txn}", Origin => $host);
is($res->code, 200, 'POST replay=TXN with our own Origin: 200');
is_deeply(response_json($res), { replayed => 1 }, 'POST replay=TXN: {"replayed":1}')
    or diag($res->content);
$r = wait_row($d410, 1, 20);
@ok = calls_ok($d410);
ok($r && @ok == 1 && txn_of($ok[0]) eq $row{$d410}{txn},
   'POST replay=TXN: delivered with its original txn') or diag(fmt_attempts(attempts_of($d410)));

$res = replay_post("replay_since=" . int(outbox("SELECT created FROM et_event WHERE txn = "
                                                  . sql_quote($row{$e400}{txn}))->[0]{created} / 1e6));
is_deeply([$res->code, response_json($res)], [200, { replayed => 2 }],
          'POST replay_since (no Origin): the two later ones') or diag($res->content);
my @r2 = map { wait_row($_, 1, 20) } $e400, $f422;
ok(!grep({ !$_ } @r2) && replayed_ok($e400, $f422),
   'POST replay_since: delivered with their original txns');
ok(errlog_count($mark, qr/ET00054: status: 2 dead letter\(s\) replayed \(since /),
   'POST replay: ET00054 logged');

$res = replay_post("replay=$row{$d410}{txn}");
is_deeply([$res->code, response_json($res)], [200, { replayed => 0 }],
          'POST replay of an event that is not dead: {"replayed":0}');
$res = replay_post("nothing=1");
is($res->code, 400, 'POST without replay or replay_since: 400');

# -- a dead letter does not hold back its object; a replay comes after -----------------------------
my $h = make('order', [404]);
wait_row($h, 2, 20);
request('et_dead', PUT => "/inproc/member/$h", json => { seq => 1 });
my $upd;
wait_for(sub { $upd = outbox("SELECT state FROM et_event WHERE oid = " . sql_quote($h)
                             . " AND event = 'post-update'")->[0]; $upd && $upd->{state} == 1 }, 20);
is($upd && $upd->{state}, 1, 'order: the update is delivered although the create is dead');
my $create_txn = outbox("SELECT txn FROM et_event WHERE oid = " . sql_quote($h)
                        . " AND event = 'post-create'")->[0]{txn};
etctl('replay', $create_txn);
wait_for(sub { outbox("SELECT state FROM et_event WHERE txn = " . sql_quote($create_txn))->[0]{state} == 1 }, 20);
my @ev = map { event_of($_) . '/' . ($_->{answer} // '') } attempts_of($h);
is("@ev", 'post-create/404 post-update/200 post-create/200',
   'order: the replayed create arrives after the update (replay is the operator\'s call)')
    or diag("@ev");

stop_proc($receiver);
