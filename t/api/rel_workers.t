# EventTriggerWorkers is how many calls are under way at once: the
# dispatcher makes them side by side (one thread, a libcurl multi handle),
# never more. A standalone httpd (EventTriggerWorkers is per instance) with
# three workers, and a receiver that answers each call after 1 s; nine
# objects saved at once. The receiver records each call on arrival: no
# more than three arrive within any 0.9 s (a fourth waits for an answer),
# and three do arrive together (the calls overlap; one at a time would
# take 9 s). Each event is called once and delivered.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use ETTest qw(:all);
use ETOps qw(:all);
use File::Path qw(make_path remove_tree);

plan tests => 6;

my $DELAY = 1.0;
my %P;
# (not a map over qw(): reading the configuration assigns $_)
for my $name (qw(ET_REL_WORKERS_PORT ET_REL_WORKERS_RECEIVER_PORT)) {
    $P{$name} = ops_define($name);
}
my $dir = t_path('t_dir', 'tmp', 'rel_workers');
remove_tree($dir);
make_path("$dir/logs");
my $rlog = receiver_log('-slow');
my $rpid = start_receiver(port => $P{ET_REL_WORKERS_RECEIVER_PORT},
                          log => $rlog, truncate => 1, delay => $DELAY);

my $conf = mini_httpd_conf($dir, [$P{ET_REL_WORKERS_PORT}], <<"EOF2");
LogLevel warn eventtrigger:info
EventTriggerStore sqlite3:$dir/outbox.db
EventTriggerWorkers 3
EventTriggerLease 20s
EventTriggerTimeout 5s
EventTriggerConnectTimeout 1s
EventTriggerPollInterval 200ms
EventTriggerSiteName workers
EventTriggerEndpoint http://127.0.0.1:$P{ET_REL_WORKERS_RECEIVER_PORT}/hooks/slow
@{[MINI_CONSOLE]}
EOF2
my $pid = mini_httpd_start($conf, $P{ET_REL_WORKERS_PORT}, "$dir/logs/stdout");

my @ids = map { uniq('workers') } 1 .. 9;
is(mini_post_members($P{ET_REL_WORKERS_PORT}, @ids), 9,
   'the console saved nine objects');

my($done, $rows) = mini_wait_delivered("$dir/outbox.db", 40, '', @ids);
ok($done, 'all nine delivered') or diag(explain $rows);

my @counts = map { scalar calls_for_id($_, $rlog) } @ids;
is_deeply(\@counts, [(1) x 9], 'each called exactly once')
    or diag(explain \@counts);

# arrival times; a call ends (and the next may start) $DELAY after it came
my @t = sort { $a <=> $b } map { $_->{time} } map { calls_for_id($_, $rlog) } @ids;
my($most, $window) = (0, $DELAY - 0.1);
for my $i (0 .. $#t) {
    my $n = grep { $_ >= $t[$i] && $_ < $t[$i] + $window } @t;
    $most = $n if $n > $most;
}
cmp_ok($most, '<=', 3, 'never more than EventTriggerWorkers (3) calls at once')
    or diag(explain \@t);
is($most, 3, 'three calls under way together: side by side, not one by one')
    or diag(explain \@t);

my @log = do { open my $l, '<', "$dir/logs/error_log" or die $!; <$l> };
is(scalar(grep { /ET01002|ET01019/ } @log), 0,
   'no lease ran out and nothing went back untried (ET01002, ET01019)')
    or diag(join '', grep { /eventtrigger/ } @log);

mini_httpd_stop($pid);
stop_proc($rpid);
