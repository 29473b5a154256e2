# Two machines on one PostgreSQL outbox: two standalone httpd instances
# (ETOps::mini_httpd_*), each with its own dispatcher, share the outbox of
# a PostgreSQL server the test starts itself (default settings).
#
# 1. Both capture and drain hot objects (many updates of a few ids, half
#    of them through each instance) and plain objects while the receiver
#    fails some calls: every event is delivered, each object's events
#    reached the receiver in capture order (across both machines), both
#    dispatchers made calls, and PostgreSQL's log has no "deadlock
#    detected".
# 2. The endpoint goes down: once one dispatcher pauses it (ET01010) the
#    other does too (its own ET01010, or ET01056: a pause another recorded),
#    and while it is down the receiver gets only probes, one at a time, a
#    pause apart - one probe for both machines, not one each. When it is
#    back, both resume (ET01012 or ET01057) and everything is delivered.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use ETTest qw(:all);
use ETOps qw(:all);
use ETPg qw(:all);
use ETRel qw(:all);
use File::Path qw(make_path remove_tree);
use JSON::PP ();
use LWP::UserAgent ();
use POSIX qw(WNOHANG);
use Time::HiRes ();

my $why = pg_skip_reason();
plan skip_all => $why if $why;
plan skip_all => 'the in-process console is not built'
    unless -e ETOps::console_so();
plan tests => 17;

my @ports = (ops_define('ET_MP_PORT1'), ops_define('ET_MP_PORT2'));
my $pgport = ops_define('ET_MP_PG_PORT');
my $fport = ETRel::fault_port();
my $dir = t_path('t_dir', 'tmp', 'multi_pgsql');
remove_tree($dir);
make_path("$dir/pg", map { "$dir/node$_/logs" } 1, 2);
my $rlog = "$dir/receiver.jsonl";
my $json = JSON::PP->new->canonical;
my $ROOT = '/hooks/mp';
my $PAUSE = 1;                       # EventTriggerCircuitBreaker's pauses (s)
my $DOWN_FOR = 8;                    # seconds the endpoint stays down once paused
my $SLACK = 1.5;                     # a dispatcher reads the others' pauses each 1s

pg_init("$dir/pg", $pgport);

my $receiver = start_fault_receiver(log => $rlog, truncate => 1);

# The same site on both, as two machines of one deployment would have it.
my @pids;
for my $n (1, 2) {
    my $conf = mini_httpd_conf("$dir/node$n", [$ports[$n - 1]], <<"CONF" . ETOps::MINI_CONSOLE);
LogLevel info eventtrigger:info
EventTriggerStore "pgsql:host=127.0.0.1 port=$pgport user=et dbname=postgres connect_timeout=2"
EventTriggerPollInterval 200ms
EventTriggerLease 12s
EventTriggerWorkers 4
EventTriggerSiteName mp
EventTriggerEndpoint http://127.0.0.1:$fport$ROOT
EventTriggerFormat json
EventTriggerTimeout 1s
EventTriggerConnectTimeout 500ms
EventTriggerRetry 0 200ms 400ms 400ms 400ms 400ms 400ms 400ms 400ms 400ms 400ms 400ms 400ms 400ms 400ms 400ms 400ms 400ms 400ms 400ms
EventTriggerCircuitBreaker 3 ${PAUSE}s ${PAUSE}s
<Location /et-status>
    SetHandler eventtrigger-status
</Location>
CONF
    push @pids, mini_httpd_start($conf, $ports[$n - 1], "$dir/node$n/logs/stdout");
}
my @errlogs = map { "$dir/node$_/logs/error_log" } 1, 2;
sub count_in { my($file, $from, $re) = @_; scalar grep { /$re/ } lines_since($file, $from) }

# Requests through node $n, in a child of their own; returns its pid.
sub load {
    my($n, @reqs) = @_;
    my $kid = fork // die "fork: $!";
    return $kid if $kid;
    my $ua = LWP::UserAgent->new(timeout => 15, keep_alive => 1);
    for my $r (@reqs) {
        my($method, $id, $body) = @$r;
        my $url = "http://127.0.0.1:$ports[$n - 1]/inproc/member"
                  . ($method eq 'PUT' ? "/$id" : '');
        $ua->request(HTTP::Request->new($method => $url,
            ['Content-Type' => 'application/json'], $json->encode($body)));
    }
    POSIX::_exit(0);
}
sub wait_kids { for my $k (@_) { wait_for(sub { waitpid($k, WNOHANG) == $k }, 60) or kill KILL => $k } }

# -- 1. hot and plain objects, some calls failing ----------------------------------
set_plan({ prefix => "$ROOT/", actions => [],
           default => { random => [[0.85, 200], [0.15, 503]] } });
my @hot = map { uniq("mp-hot$_") } 1 .. 4;
my(@kids, $total);
for my $n (1, 2) {
    my @reqs;
    for my $i (1 .. 40) {
        push @reqs, ['PUT', $_, { id => $_, seq => $i, node => $n }] for @hot;
        push @reqs, ['POST', undef, { id => uniq("mp-plain$n-$i") }];
    }
    $total += @reqs;
    push @kids, load($n, @reqs);
}
wait_kids(@kids);
my $stored = (psql("SELECT COUNT(*) FROM et_event WHERE site = 'mp'"))[0] // 0;
is($stored, $total, "every change made its event ($total)");
my $drained = wait_for(sub {
    (psql("SELECT COUNT(*) FROM et_event WHERE site = 'mp' AND state <> 1"))[0] == 0
}, 120);
ok($drained, 'every event delivered (none pending, none dead)')
    or diag(join "\n", psql("SELECT state, COUNT(*) FROM et_event GROUP BY state"));

# the receiver's 200s, per object, in arrival order, against capture order
my(%got, %first);
for my $c (calls($rlog)) {
    next unless ($c->{answer} // '') eq '200' && $c->{path} =~ m{^\Q$ROOT\E/};
    my $txn = txn_of($c);
    next if $first{$txn}++;
    my @segs = split m{/}, $c->{path};
    push @{ $got{ seg_decode($segs[-1]) } }, $txn;
}
my %want;
for (psql("SELECT oid, txn FROM et_event WHERE site = 'mp' ORDER BY id")) {
    my($oid, $txn) = split /\|/;
    push @{ $want{$oid} }, $txn;
}
my @disorder = grep { join(' ', @{ $got{$_} || [] }) ne join(' ', @{ $want{$_} }) } sort keys %want;
is(scalar @disorder, 0, sprintf('each object\'s events reached the receiver in capture '
                                . 'order (%d objects, %d of them hot)', scalar keys %want,
                                scalar @hot))
    or diag(explain [map { [$_, $got{$_}, $want{$_}] } @disorder[0 .. ($#disorder < 2 ? $#disorder : 2)]]);
my @delivered = map { count_in($_, 0, qr/ET01001: delivered .*site=mp /) } @errlogs;
ok($delivered[0] > 0 && $delivered[1] > 0,
   "both dispatchers delivered (@delivered)");
my @failed = map { count_in($_, 0, qr/ET01001: will retry .*site=mp /) } @errlogs;
cmp_ok($failed[0] + $failed[1], '>', 0, "some calls failed and were retried (@failed)");
my @deadlocks = grep { /deadlock detected/ } read_lines("$dir/pg/log");
is(scalar @deadlocks, 0, 'PostgreSQL logged no "deadlock detected"')
    or diag(join '', @deadlocks[0 .. ($#deadlocks < 4 ? $#deadlocks : 4)]);
my @errs = map { count_in($_, 0, qr/ET0100[36]:|ET01018:/) } @errlogs;
is($errs[0] + $errs[1], 0, "no claim or round failed (ET01003/ET01006/ET01018: @errs)");

# -- 2. the endpoint down: one pause, one probe, for both ---------------------------
my @mark = map { log_offset($_) } @errlogs;
my $t_down = Time::HiRes::time();
set_plan({ prefix => "$ROOT/", actions => [], default => 503 });
my @down = map { uniq("mp-down$_") } 1 .. 12;
@kids = map { my $n = $_; load($n, map { ['POST', undef, { id => $_ }] }
                                    @down[($n - 1) * 6 .. $n * 6 - 1]) } 1, 2;
my $opener;
wait_for(sub {
    ($opener) = grep { count_in($errlogs[$_], $mark[$_], qr/ET01010: .*site mp /) } 0, 1;
    defined $opener
}, 20);
my $t_open = Time::HiRes::time();
ok(defined $opener, 'down: a dispatcher paused the endpoint (ET01010)');
my $other = defined $opener ? 1 - $opener : 1;
my $told = wait_for(sub {
    count_in($errlogs[$other], $mark[$other], qr/ET0101[0]: .*site mp |ET01056: .*site mp /)
}, $SLACK + 1);
ok($told, 'down: the other dispatcher paused it too (ET01010, or ET01056: adopted)');
wait_kids(@kids);
wait_for(sub { Time::HiRes::time() - $t_open >= $DOWN_FOR }, $DOWN_FOR + 1);
my $t_up = Time::HiRes::time();
clear_plans();

my $back = wait_for(sub {
    (psql("SELECT COUNT(*) FROM et_event WHERE site = 'mp' AND state <> 1"))[0] == 0
}, 60);
ok($back, 'back: every event delivered, none dead');

# While it was down (once both knew of the pause), only probes reached it:
# one at a time, a pause apart, as many as one dispatcher makes.
my @probes = grep { $_->{path} =~ m{^\Q$ROOT\E/} && $_->{time} >= $t_open + $SLACK
                    && $_->{time} < $t_up } calls($rlog);
my @close = grep { $probes[$_]{time} - $probes[$_ - 1]{time} < $PAUSE / 2 } 1 .. $#probes;
ok(@probes >= 2 && !@close, sprintf('down: one probe at a time, a pause apart (%d probes)',
                                    scalar @probes))
    or diag(fmt_attempts(@probes));
my $max = int(($t_up - $t_open - $SLACK) / $PAUSE) + 2;
ok(@probes <= $max, sprintf('down: one probe per pause for both machines (%d <= %d)',
                            scalar @probes, $max))
    or diag(fmt_attempts(@probes));
is(scalar(grep { ($_->{answer} // '') ne '503' } @probes), 0, 'down: every probe failed (503)');
my @l11 = map { count_in($errlogs[$_], $mark[$_], qr/ET01011: probe of site mp /) } 0, 1;
cmp_ok($l11[0] + $l11[1], '>=', scalar(@probes) - 1,
       "down: each failed probe logged ET01011 by the dispatcher that made it (@l11)");
# both resumed
# (the one that did not probe reads the outcome within a second or so)
my @resumed;
wait_for(sub {
    @resumed = map { count_in($errlogs[$_], $mark[$_], qr/ET0101[2]: .*site mp |ET01057: .*site mp /) } 0, 1;
    $resumed[0] && $resumed[1]
}, $SLACK + 2);
ok($resumed[0] && $resumed[1], "back: both dispatchers resumed (ET01012 or ET01057: @resumed)");
my $st = eval { $json->decode(LWP::UserAgent->new(timeout => 10)
                 ->get("http://127.0.0.1:$ports[$other]/et-status?json")->content) };
my($site) = $st ? grep { $_->{site} eq 'mp' } @{ $st->{sites} } : ();
is($site && $site->{circuit}{state}, 'closed', 'back: the status page shows the circuit closed')
    or diag($json->encode($site // {}));

mini_httpd_stop($_) for @pids;
my @untagged = untagged_lines(@errlogs);
is(scalar @untagged, 0, 'every module line of both instances carries its ET tag')
    or diag(join "\n", @untagged[0 .. ($#untagged < 5 ? $#untagged : 5)]);
stop_proc($receiver);
