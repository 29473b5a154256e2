package ETRel;

# Helpers of the reliability tests (t/api/rel_*.t): the fault-injecting
# receiver (t/bin/receiver.py with plans, on ET_FAULT_PORT of
# t/conf/reliability.conf.in), attempts as the receiver saw them, the error
# log, etctl, and the httpd processes (parent, children, dispatcher).
#
# As in ETTest, time passes only through wait_for() (polling with a
# deadline); no fixed sleep is an assertion.

use strict;
use warnings;

use Exporter 'import';
use Apache::Test ();
use JSON::PP ();
use HTTP::Request ();
use LWP::UserAgent ();
use Time::HiRes ();
use File::Temp ();
use POSIX qw(WNOHANG);
use ETTest qw(t_path calls parse_query seg_decode wait_for start_receiver
              outbox sql_quote outbox_file);

our @EXPORT_OK = qw(
    rel_define start_fault_receiver fault_log set_plan clear_plans
    attempts_of txn_of event_of wait_attempts wait_row row_of
    errlog_mark errlog_since errlog_count
    etctl httpd_parent_pid dispatcher_pid httpd_children proc_alive
    fmt_attempts in_range
);
our %EXPORT_TAGS = (all => \@EXPORT_OK);

my $JSON = JSON::PP->new->utf8->canonical;

# A Define of the generated t/conf/reliability.conf.
my %defines;
sub rel_define {
    my $name = shift;
    unless (%defines) {
        my $file = t_path('t_conf', 'reliability.conf');
        open my $fh, '<', $file or die "open $file: $!";
        while (<$fh>) {
            $defines{$1} = $2 if /^\s*Define\s+(\S+)\s+(\S+)/;
        }
    }
    defined $defines{$name} or die "no Define $name in t/conf/reliability.conf";
    return $defines{$name};
}

sub fault_port { rel_define('ET_FAULT_PORT') }

# The receiver's log of this test file (t/logs/receiver-rel_xxx.jsonl).
sub fault_log { ETTest::receiver_log(shift // '') }

# The fault-injecting receiver on ET_FAULT_PORT (plans start empty: every
# call gets 200 until set_plan says otherwise). Returns its pid.
sub start_fault_receiver {
    my(%a) = @_;
    return start_receiver(port => fault_port(), log => $a{log} // fault_log(),
                          truncate => $a{truncate} // 0, %a);
}

my $UA = LWP::UserAgent->new(timeout => 10, keep_alive => 0);

# set_plan([actions...]) or set_plan({actions => [...], default => ...,
# path => ... | prefix => ...}): see t/bin/receiver.py. Dies if refused.
sub set_plan {
    my $spec = shift;
    my $req = HTTP::Request->new(PUT => "http://127.0.0.1:" . fault_port() . "/_plan",
                                 ['Content-Type' => 'application/json'],
                                 $JSON->encode($spec));
    my $res = $UA->request($req);
    die "receiver refused the plan: " . $res->status_line . ' ' . $res->content
        unless $res->is_success;
    return $JSON->decode($res->content);
}

sub clear_plans {
    my $res = $UA->request(HTTP::Request->new(
        DELETE => "http://127.0.0.1:" . fault_port() . "/_plan"));
    return $res->is_success;
}

sub txn_of {
    my %q = parse_query($_[0]->{query});
    return $q{txn} // '';
}

sub event_of {
    my %q = parse_query($_[0]->{query});
    return $q{event} // '';
}

# Every request the receiver got for object id $id (the call's last path
# segment), oldest first, answered or not.
sub attempts_of {
    my($id, $log) = @_;
    return grep {
        my @segs = split m{/}, $_->{path}, -1;
        @segs && seg_decode($segs[-1]) eq $id
    } calls($log // fault_log());
}

# Wait until $cond->(@attempts of $id) holds (default: at least n => N).
sub wait_attempts {
    my($id, %a) = @_;
    my $n = $a{n} // 1;
    my $cond = $a{until} // sub { @_ >= $n };
    my @got;
    wait_for(sub { @got = attempts_of($id, $a{log}); $cond->(@got) },
             $a{timeout} // 30);
    return @got;
}

# The outbox row of object id $id (the latest event of it).
sub row_of {
    my $id = shift;
    return outbox("SELECT id, txn, state, attempts, last_status, last_error, "
                  . "error, due, done_at, lease_until FROM et_event WHERE oid = "
                  . sql_quote($id) . " ORDER BY id DESC LIMIT 1")->[0];
}

# Wait until the row of $id is in $state (1 delivered, 2 dead).
sub wait_row {
    my($id, $state, $timeout) = @_;
    my $row;
    wait_for(sub { $row = row_of($id); $row && $row->{state} == $state },
             $timeout // 30);
    return $row;
}

# -- error log -----------------------------------------------------------------

sub errlog_file { t_path('t_logs', 'error_log') }

sub errlog_mark { -s errlog_file() // 0 }

# The error log's lines written since $mark (optionally matching $re).
sub errlog_since {
    my($mark, $re) = @_;
    open my $fh, '<', errlog_file() or return ();
    seek $fh, $mark, 0;
    my @lines = <$fh>;
    return $re ? grep { /$re/ } @lines : @lines;
}

sub errlog_count { scalar errlog_since(@_) }

# -- etctl -------------------------------------------------------------------

# etctl(ARGS...) on the test outbox: (exit code, stdout, stderr).
sub etctl {
    my @args = @_;
    my $bin = t_path('t_dir', '..', 'etctl');
    die "etctl is not built ($bin)\n" unless -x $bin;
    my $err = File::Temp->new;
    my $pid = open my $fh, '-|';
    die "fork: $!" unless defined $pid;
    if (!$pid) {
        open STDERR, '>', $err->filename;
        exec($bin, '-s', 'sqlite3:' . outbox_file(), @args) or POSIX::_exit(127);
    }
    local $/;
    my $out = <$fh> // '';
    close $fh;
    my $rc = $? >> 8;
    my $errtext = do { local $/; open my $e, '<', $err->filename; <$e> } // '';
    return ($rc, $out, $errtext);
}

# -- processes -----------------------------------------------------------------

sub httpd_parent_pid {
    my $file = t_path('t_logs', 'httpd.pid');
    open my $fh, '<', $file or return undef;
    my $pid = <$fh>;
    chomp $pid if defined $pid;
    return $pid && proc_alive($pid) ? $pid : undef;
}

sub proc_alive {
    my $pid = shift;
    return 0 unless $pid && -e "/proc/$pid";
    open my $fh, '<', "/proc/$pid/stat" or return 0;
    my $stat = <$fh> // '';
    # a zombie is dead
    return $stat =~ /\)\s+Z\s/ ? 0 : 1;
}

sub ppid_of {
    my $pid = shift;
    open my $fh, '<', "/proc/$pid/stat" or return 0;
    my $stat = <$fh> // '';
    return $stat =~ /\)\s+\S+\s+(\d+)/ ? $1 : 0;
}

# The running dispatcher: the pid of the latest "ET00045: dispatcher
# started (pid N)" logged by httpd's running parent whose process is alive
# and its child. Only that parent's lines: a pid an earlier httpd logged
# may be one of this httpd's children now (the error log outlives runs),
# and was taken for a new dispatcher before the new one started.
sub dispatcher_pid {
    my $parent = httpd_parent_pid() or return undef;
    my @pids = map { /\[pid \Q$parent\E:tid \d+\] ET00045: dispatcher started \(pid (\d+)\)/ ? $1 : () }
        errlog_since(0, qr/ET00045/);
    for my $pid (reverse @pids) {
        return $pid if proc_alive($pid) && ppid_of($pid) == $parent;
    }
    return undef;
}

# httpd's children (the MPM's processes), without the dispatcher.
sub httpd_children {
    my $parent = httpd_parent_pid() or return ();
    my $disp = dispatcher_pid() // 0;
    opendir my $d, '/proc' or return ();
    return grep { $_ != $disp && proc_alive($_) && ppid_of($_) == $parent }
        grep { /^\d+$/ } readdir $d;
}

# -- timing ------------------------------------------------------------------

sub in_range {
    my($v, $lo, $hi) = @_;
    return defined $v && $v >= $lo && $v <= $hi;
}

# One line per attempt, for diagnostics.
sub fmt_attempts {
    my $t0 = @_ ? $_[0]{time} : 0;
    return join "\n", map {
        sprintf "  +%.3fs %s %s txn=%s -> %s", $_->{time} - $t0, $_->{method},
            event_of($_), txn_of($_), $_->{answer} // '?'
    } @_;
}

1;
