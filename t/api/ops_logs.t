# The module's logs (README "Logs", docs/directives.md "The
# eventtrigger-txn request note"), on the site ops-log
# (t/conf/operations.conf.in):
# - one ET01001 line per delivery attempt, with txn, site, object, event,
#   id, attempt, status, latency and trace id (and the error when it failed):
#   delivered at info, "will retry" at warn, "dead letter" at error;
# - the txn of the event a request queued in the access log through
#   CustomLog "%{eventtrigger-txn}n" ("-" when nothing was queued);
# - LogLevel per module: in a <Location> for the request-side lines; in
#   the main server for the dispatcher's lines (a second, standalone httpd
#   with LogLevel eventtrigger:info, then eventtrigger:warn);
# - every line of the module starts with its ET tag;
# - the signing secret and header values never reach a log.
use strict;
use warnings FATAL => 'all';

use Apache::Test qw(-withtestmore);
use ETTest qw(:all);
use ETOps qw(:all);
use File::Path qw(make_path remove_tree);

plan tests => 37;

my $SITE = 'ops-log';
my $VH = 'ops_log';
my $rport = ops_define('ET_OPS_LOG_RECEIVER_PORT');
my $rlog = receiver_log();
my $u = uniq('log');
my $error_log = t_path('t_logs', 'error_log');
my $access_log = t_path('t_logs', 'ops_access.log');
my $SECRET_B64 = 'b3BzLWxvZy1zZWNyZXQta2V5LW5vdC1mb3ItbG9ncyE=';
my $SECRET_RAW = 'ops-log-secret-key-not-for-logs!';
my $TOKEN = 'ops-token-9f3a7c1e5b';

my $err_off = log_offset($error_log);
my $acc_off = log_offset($access_log);

sub row_of {
    my $oid = shift;
    return outbox("SELECT id, txn, state, attempts, last_status FROM et_event "
                  . "WHERE site = '$SITE' AND oid = " . sql_quote($oid)
                  . " ORDER BY id");
}

sub wait_state {
    my($oid, $n, $state, $attempts) = @_;
    my $rows;
    wait_for(sub {
        $rows = row_of($oid);
        @$rows == $n && !grep { $_->{state} != $state
                                || (defined $attempts && $_->{attempts} != $attempts) } @$rows;
    }, 30);
    return $rows;
}

# ET01001 lines of the error log (since the test began) for a txn:
# [{ level, outcome, txn, site, object, event, id, attempt, status,
#    latency, trace, chained, error }]; chained is 1 when the call followed
# its object's previous one at once (chained delivery), which depends on
# timing: the update and delete below may or may not be chained, the
# create (its object's first event) never is
sub attempts_logged {
    my($txn, $file, $off) = @_;
    my @out;
    for (lines_since($file // $error_log, $off // $err_off)) {
        next unless /\[eventtrigger:(\w+)\].* ET01001: (delivered|will retry in \d+ms|dead letter) txn=(\S+) site=(\S+) object=(\S+) event=(\S+) id=(\S+) attempt=(\d+) status=(\d+) latency=(\d+)ms trace=(\S+)( chained=1)?(?: error=(.*))?$/;
        next unless $3 eq $txn;
        push @out, { level => $1, outcome => $2, txn => $3, site => $4, object => $5,
                     event => $6, id => $7, attempt => $8, status => $9,
                     latency => $10, trace => $11, chained => ($12 ? 1 : 0),
                     error => $13 };
    }
    return \@out;
}

sub access_line {
    my $tag = shift;
    my $line;
    wait_for(sub { ($line) = grep { /\Q$tag\E/ } lines_since($access_log, $acc_off);
                   defined $line }, 10);
    return $line // '';
}

sub txn_in { my $l = shift; return $l =~ / txn=(\S+)$/ ? $1 : undef }

start_console();
my $rpid = start_receiver(port => $rport, log => $rlog, truncate => 1);

# -- delivered: create, update, delete ------------------------------------

my $id = "m-$u";
my %req;
$req{'post-create'} = request($VH, POST => "/inproc/member?tag=c-$u",
                              json => { id => $id, username => 'log-user' });
$req{'post-update'} = request($VH, PUT => "/inproc/member/$id?tag=u-$u",
                              json => { id => $id, username => 'log-user2' });
$req{'post-delete'} = request($VH, DELETE => "/inproc/member/$id?tag=d-$u");
ok(!grep({ !$_->is_success } values %req), 'create, update, delete answered 2xx');
my $rows = wait_state($id, 3, 1);
is(scalar @$rows, 3, 'three events delivered') or diag(explain $rows);
my %txn;
@txn{qw(post-create post-update post-delete)} = map { $_->{txn} } @$rows;

for my $ev (qw(post-create post-update post-delete)) {
    my $got;
    wait_for(sub { $got = attempts_logged($txn{$ev}); @$got }, 10);
    is_deeply([map { { %$_, latency => ($_->{latency} =~ /^\d+$/ ? 'ms' : $_->{latency}),
                       trace => ($_->{trace} =~ /^[0-9a-f]{32}$/ ? 'id' : $_->{trace}),
                       chained => ($ev eq 'post-create' ? $_->{chained} : 'any') } } @$got],
              [{ level => 'info', outcome => 'delivered', txn => $txn{$ev},
                 site => $SITE, object => 'member', event => $ev, id => $id,
                 attempt => 1, status => 200, latency => 'ms', trace => 'id',
                 chained => ($ev eq 'post-create' ? 0 : 'any'), error => undef }],
              "$ev: one ET01001 line at info: delivered, txn, site, object, "
              . "event, id, attempt=1, status=200, latency, trace")
        or diag(explain $got);
}

# -- retried, then dead: one line per attempt -------------------------------

stop_proc($rpid);
$rpid = start_receiver(port => $rport, log => $rlog, status => 503);
my $rid = "r-$u";
my $res = request($VH, POST => "/inproc/member?tag=r-$u", json => { id => $rid });
is($res->code, 201, 'a create while the receiver answers 503');
$rows = wait_state($rid, 1, 2, 3);
ok(@$rows == 1 && $rows->[0]{state} == 2 && $rows->[0]{attempts} == 3,
   '503 three times (EventTriggerRetry 0 300ms 300ms): dead after 3 attempts')
    or diag(explain $rows);
my $rtxn = $rows->[0] ? $rows->[0]{txn} : '';
my $got;
wait_for(sub { $got = attempts_logged($rtxn); @$got >= 3 }, 10);
is(scalar @$got, $rows->[0] ? $rows->[0]{attempts} : 3,
   'as many ET01001 lines as attempts in the outbox') or diag(explain $got);
is_deeply([map { "$_->{attempt} $_->{level} $_->{status}" } @$got],
          ['1 warn 503', '2 warn 503', '3 error 503'],
          'attempts 1 and 2 at warn, the last at error, each with status 503');
ok(@$got == 3 && $got->[0]{outcome} =~ /^will retry in \d+ms$/
   && $got->[1]{outcome} =~ /^will retry in \d+ms$/ && $got->[2]{outcome} eq 'dead letter',
   '"will retry in Nms", then "dead letter"') or diag(explain $got);
ok(!grep({ ($_->{error} // '') !~ /503/ || $_->{site} ne $SITE || $_->{id} ne $rid
           || $_->{event} ne 'post-create' } @$got),
   'each with the error (HTTP 503), site, id and event');
stop_proc($rpid);
$rpid = start_receiver(port => $rport, log => $rlog);

# -- the txn in the access log ------------------------------------------------

for my $ev (qw(post-create post-update post-delete)) {
    my $tag = { 'post-create' => "c-$u", 'post-update' => "u-$u", 'post-delete' => "d-$u" }->{$ev};
    my $line = access_line($tag);
    my($call) = grep { my %q = parse_query($_->{query}); ($q{txn} // '') eq ($txn{$ev} // 'x') }
                calls($rlog);
    ok($txn{$ev} && txn_in($line) eq $txn{$ev} && $call,
       "access log: $ev with the txn of its event (= outbox = the call's)")
        or diag("line: $line\ntxn: " . ($txn{$ev} // 'none'));
}
is(txn_in(access_line("r-$u")), $rtxn, 'access log: the dead one\'s request too');
request($VH, GET => "/inproc/member/$id?tag=g-$u");
is(txn_in(access_line("g-$u")), '-', 'access log: a GET queues nothing: txn=-');
request($VH, POST => "/inproc/member?tag=e-$u", json => { id => "e-$u" },
        headers => { 'X-Console-Status' => 409 });
is(txn_in(access_line("e-$u")), '-', 'access log: a 409 queues nothing: txn=-');
my $last = outbox("SELECT COALESCE(max(id), 0) AS m FROM et_event")->[0]{m};
request($VH, POST => "/inproc/member?tag=f-$u", content => qq({"name": "noid-$u"}),
        headers => { 'X-Console-Raw' => 1 });
my $frow = outbox("SELECT txn, state, error FROM et_event WHERE site = '$SITE' "
                  . "AND id > $last")->[0];
ok($frow && $frow->{state} == 3 && txn_in(access_line("f-$u")) eq $frow->{txn},
   'access log: a failed event\'s request has its txn too') or diag(explain $frow);
ok($frow && grep({ /\[eventtrigger:warn\].* ET00034: .*txn=\Q$frow->{txn}\E/ }
                 lines_since($error_log, $err_off)),
   'and the error log an ET00034 warning with that txn');

# -- LogLevel in a <Location>: the request-side lines ------------------------

$res = request($VH, POST => "/inproc/member?tag=loud-$u", json => { id => "loud-$u" });
my $loud = wait_state("loud-$u", 1, 1)->[0];
$res = request($VH, POST => "/inproc/quiet/member?tag=quiet-$u", json => { id => "quiet-$u" });
my $quiet = wait_state("quiet-$u", 1, 1)->[0];
ok($loud && $quiet, 'two events, one made under LogLevel eventtrigger:warn, delivered');
my @since = lines_since($error_log, $err_off);
ok($loud && grep({ /\[eventtrigger:debug\].* ET00035: queued txn=\Q$loud->{txn}\E/ } @since),
   'debug (ET00035 "queued") logged where the main server\'s eventtrigger:debug applies');
ok($quiet && !grep({ /ET00035: queued txn=\Q$quiet->{txn}\E/ } @since),
   'not logged under <Location> LogLevel eventtrigger:warn');
ok($quiet && wait_for(sub { @{ attempts_logged($quiet->{txn}) } }, 10),
   'the dispatcher\'s ET01001 for it follows the main server\'s level (logged)');
request($VH, POST => "/inproc/quiet/member?tag=qf-$u", content => '[1]',
        headers => { 'X-Console-Raw' => 1 });
my $qf = txn_in(access_line("qf-$u"));
ok($qf && $qf ne '-' && grep({ /ET00034: .*txn=\Q$qf\E/ } lines_since($error_log, $err_off)),
   'a warning (ET00034) is still logged there');

stop_proc($rpid);

# -- LogLevel of the main server: the dispatcher's lines ---------------------
# A standalone httpd (not Apache::Test's) with the built module and the
# in-process console, run twice with LogLevel warn eventtrigger:LEVEL.

my %P = map { $_ => ops_define($_) }
    qw(ET_OPS_MINI_PORT ET_OPS_MINI_PORT2 ET_OPS_MINI_PORT3 ET_OPS_MINI_RECEIVER_PORT);
my $closed = ETTest::define('ET_CLOSED_PORT');
my $mini_rlog = receiver_log('-mini');
my $mpid = start_receiver(port => $P{ET_OPS_MINI_RECEIVER_PORT}, log => $mini_rlog,
                          truncate => 1);
my @mini_logs;

sub mini_run {
    my $level = shift;
    my $dir = t_path('t_dir', 'tmp', "ops_logs_$level");
    remove_tree($dir);
    make_path("$dir/logs");
    my $conf = mini_httpd_conf($dir, [@P{qw(ET_OPS_MINI_PORT ET_OPS_MINI_PORT2
                                              ET_OPS_MINI_PORT3)}], <<"EOF");
LogLevel warn eventtrigger:$level
EventTriggerStore sqlite3:$dir/outbox.db
EventTriggerPollInterval 200ms
@{[MINI_CONSOLE]}<VirtualHost 127.0.0.1:$P{ET_OPS_MINI_PORT}>
    EventTriggerSiteName mini-ok
    EventTriggerEndpoint http://127.0.0.1:$P{ET_OPS_MINI_RECEIVER_PORT}/hooks/mini
</VirtualHost>
<VirtualHost 127.0.0.1:$P{ET_OPS_MINI_PORT2}>
    EventTriggerSiteName mini-dead
    EventTriggerEndpoint http://127.0.0.1:$closed/hooks/dead
    EventTriggerRetry 0
    EventTriggerCircuitBreaker off
    EventTriggerConnectTimeout 1s
    EventTriggerTimeout 2s
    LogLevel warn eventtrigger:debug
</VirtualHost>
<VirtualHost 127.0.0.1:$P{ET_OPS_MINI_PORT3}>
    EventTriggerSiteName mini-vhost-info
    EventTriggerEndpoint http://127.0.0.1:$P{ET_OPS_MINI_RECEIVER_PORT}/hooks/vh
    LogLevel warn eventtrigger:info
</VirtualHost>
EOF
    my $pid = mini_httpd_start($conf, $P{ET_OPS_MINI_PORT}, "$dir/logs/stdout");
    my $db = "$dir/outbox.db";
    my %txn;
    for ([ok => $P{ET_OPS_MINI_PORT}], [dead => $P{ET_OPS_MINI_PORT2}],
         [vh => $P{ET_OPS_MINI_PORT3}]) {
        my($name, $port) = @$_;
        my $oid = "$name-$level-$u";
        mini_post_members($port, $oid);
        my $want = $name eq 'dead' ? 2 : 1;
        my $r;
        wait_for(sub { $r = sqlite_rows($db, "SELECT txn, state FROM et_event "
                                         . "WHERE oid = '$oid'")->[0];
                       $r && $r->{state} == $want }, 20);
        $txn{$name} = $r && $r->{state} == $want ? $r->{txn} : 'none';
    }
    # the dead letter's line is the last one the dispatcher writes
    wait_for(sub { @{ attempts_logged($txn{dead}, "$dir/logs/error_log", 0) } }, 10);
    mini_httpd_stop($pid);          # every line is written now
    push @mini_logs, "$dir/logs/error_log";
    my @lines = read_lines("$dir/logs/error_log");
    return (\%txn, \@lines, "$dir/logs/error_log");
}

my($t1, $l1, $f1) = mini_run('info');
ok(!grep({ $_ eq 'none' } values %$t1), 'eventtrigger:info: the events were delivered / dead');
is(scalar @{ attempts_logged($t1->{ok}, $f1, 0) }, 1,
   'main server LogLevel eventtrigger:info: the delivered line is logged');
ok(grep({ /\[eventtrigger:info\].* ET00045: dispatcher started/ } @$l1),
   'and the info line ET00045 (dispatcher started)');
is(scalar @{ attempts_logged($t1->{dead}, $f1, 0) }, 1, 'and the dead letter');

my($t2, $l2, $f2) = mini_run('warn');
ok(!grep({ $_ eq 'none' } values %$t2), 'eventtrigger:warn: the events were delivered / dead');
is(scalar @{ attempts_logged($t2->{ok}, $f2, 0) }, 0,
   'main server LogLevel eventtrigger:warn hides the delivered line');
ok(!grep({ /ET00045:/ } @$l2), 'and ET00045 (info)');
is_deeply([map { "$_->{level} $_->{outcome}" } @{ attempts_logged($t2->{dead}, $f2, 0) }],
          ['error dead letter'], 'but logs the dead letter (error)');
ok(grep({ /ET00035: queued txn=\Q$t2->{dead}\E/ } @$l2),
   'a <VirtualHost> LogLevel eventtrigger:debug shows its request-side debug lines (ET00035)');
my $vh_lines = @{ attempts_logged($t2->{vh}, $f2, 0) };
note("a <VirtualHost> with LogLevel eventtrigger:info under a main server at "
     . "eventtrigger:warn: its deliveries are " . ($vh_lines ? '' : 'NOT ')
     . "logged (the dispatcher logs with the main server)");
stop_proc($mpid);

# -- every line of the module carries its tag; no secret in any log ----------

my @untagged = untagged_lines($error_log, @mini_logs);
is_deeply(\@untagged, [], 'every [eventtrigger:...] line starts with an ET tag (ETnnnnn: )');
my $tagged = grep { /\[eventtrigger:\w+\]/ } read_lines($error_log);
cmp_ok($tagged, '>', 10, "($tagged module lines checked in t/logs/error_log)");

my @logs = ($error_log, $access_log, t_path('t_logs', 'access_log'), @mini_logs);
my @leaks;
for my $file (@logs) {
    my $text = do { local $/; open my $fh, '<', $file or next; <$fh> } // '';
    for my $s ($SECRET_B64, substr($SECRET_B64, 0, 24), $SECRET_RAW, $TOKEN) {
        push @leaks, "$file: $s" if index($text, $s) >= 0;
    }
}
is_deeply(\@leaks, [], 'neither the signing secret nor the header value is in a log');
my($signed) = grep { my %q = parse_query($_->{query}); ($q{txn} // '') eq ($txn{'post-create'} // 'x') }
              calls($rlog);
ok($signed && ($signed->{headers}{'x-ops-token'} // '') eq $TOKEN
   && ($signed->{headers}{'webhook-signature'} // '') =~ /^v1,/,
   '(the calls did carry the header and a signature)');
