package ETOps;

# Helpers of the operability tests (t/api/ops_*.t): Defines of every
# generated t/conf/*.conf, the status page's three formats (a strict
# Prometheus text parser, the HTML tables), the error log, and a second,
# standalone httpd with a configuration of the test's own.

use strict;
use warnings;

use Exporter 'import';
use JSON::PP ();
use HTML::TreeBuilder ();
use POSIX qw(WNOHANG);
use IO::Socket::INET ();
use Time::HiRes ();

use ETTest qw(t_path request response_json wait_for);

our @EXPORT_OK = qw(
    ops_define site_status prom_parse prom_value html_tables
    read_lines log_offset lines_since module_so console_so httpd_bin
    module_dir mpm_load_lines apache2_run mini_httpd_conf mini_httpd_start
    mini_httpd_stop find_chromium sqlite_rows untagged_lines
    MINI_CONSOLE mini_post_members mini_wait_delivered
    recording_console mini_proxy_lines
);
our %EXPORT_TAGS = (all => \@EXPORT_OK);

my $JSON = JSON::PP->new->utf8->allow_nonref;

sub config { Apache::Test::config() }

# The value of a Define in any generated t/conf/*.conf (ETTest::define
# reads extra.conf only).
my %defines;
sub ops_define {
    my $name = shift;
    unless (%defines) {
        for my $file (glob t_path('t_conf', '*.conf')) {
            open my $fh, '<', $file or next;
            while (<$fh>) {
                $defines{$1} = $2 if /^\s*Define\s+(\S+)\s+(\S+)/;
            }
        }
    }
    defined $defines{$name} or die "no Define $name in t/conf/*.conf";
    return $defines{$name};
}

# The status page's JSON (from $vhost, default main) and the entry of the
# site named $name in it: (whole, site entry or undef).
sub site_status {
    my($name, $vhost) = @_;
    my $res = request($vhost // 'main', GET => '/et-status?json');
    my $all = $res->is_success ? response_json($res) : undef;
    return (undef, undef) unless ref $all eq 'HASH';
    my($site) = grep { $_->{site} eq $name } @{ $all->{sites} || [] };
    return ($all, $site);
}

# -- Prometheus text format (version 0.0.4), strictly -------------------------

my $NAME = qr/[a-zA-Z_:][a-zA-Z0-9_:]*/;
my $LABEL = qr/[a-zA-Z_][a-zA-Z0-9_]*/;
my $FLOAT = qr/[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|Inf|inf)|NaN/;

sub unescape_label {
    my $v = shift;
    $v =~ s/\\(.)/$1 eq 'n' ? "\n" : $1/ge;
    return $v;
}

# prom_parse(TEXT) -> { families => { NAME => { type, help, samples =>
# [{ name, labels => {...}, value }] } }, order => [NAME...], errors => [...] }
# Checks: the text ends with a newline; HELP (escapes \\ and \n only) and
# TYPE (a known type) at most once per family and before its samples;
# samples well formed (names, label names, label values with only \\, \"
# and \n escapes, float values, optional int timestamp); every sample
# belongs to a family with a TYPE; a family's lines form one uninterrupted
# group; no series twice; summary quantiles in increasing order, each
# summary sample named after its family has a quantile label.
sub prom_parse {
    my $text = shift;
    my(%fam, @order, @errors, %series, $current);
    push @errors, 'the text does not end with a newline' unless $text =~ /\n\z/;
    my @lines = split /\n/, $text;
    my $family_of = sub {
        my $n = shift;
        return $n if $fam{$n};
        for my $suffix (qw(_sum _count _bucket)) {
            if ($n =~ /\A(.+)\Q$suffix\E\z/ && $fam{$1}
                && ($fam{$1}{type} // '') =~ /\A(?:summary|histogram)\z/) {
                return $1 unless $suffix eq '_bucket' && $fam{$1}{type} ne 'histogram';
            }
        }
        return undef;
    };
    my $enter = sub {
        my($f, $ln) = @_;
        if (defined $current && $current ne $f && $fam{$f}{closed}) {
            push @errors, "line $ln: the lines of $f are not one group";
        }
        $fam{$current}{closed} = 1 if defined $current && $current ne $f;
        $current = $f;
    };
    my $ln = 0;
    for my $line (@lines) {
        $ln++;
        next if $line =~ /\A[ \t]*\z/;
        if ($line =~ /\A[ \t]*#/) {
            if ($line =~ /\A[ \t]*#[ \t]+HELP[ \t]/) {
                unless ($line =~ /\A[ \t]*#[ \t]+HELP[ \t]+($NAME)(?:[ \t]+(.*))?\z/) {
                    push @errors, "line $ln: bad HELP line: $line";
                    next;
                }
                my($n, $doc) = ($1, $2 // '');
                push @errors, "line $ln: HELP of $n has an escape other than \\\\ and \\n"
                    if $doc =~ /\\(?![\\n])/;
                $fam{$n} ||= { samples => [] };
                push @order, $n unless $fam{$n}{seen}++;
                push @errors, "line $ln: a second HELP for $n" if defined $fam{$n}{help};
                push @errors, "line $ln: HELP of $n after its samples" if @{ $fam{$n}{samples} };
                $doc =~ s/\\(.)/$1 eq 'n' ? "\n" : $1/ge;
                $fam{$n}{help} = $doc;
                $enter->($n, $ln);
            }
            elsif ($line =~ /\A[ \t]*#[ \t]+TYPE[ \t]/) {
                unless ($line =~ /\A[ \t]*#[ \t]+TYPE[ \t]+($NAME)[ \t]+(counter|gauge|histogram|summary|untyped)[ \t]*\z/) {
                    push @errors, "line $ln: bad TYPE line: $line";
                    next;
                }
                my($n, $type) = ($1, $2);
                $fam{$n} ||= { samples => [] };
                push @order, $n unless $fam{$n}{seen}++;
                push @errors, "line $ln: a second TYPE for $n" if defined $fam{$n}{type};
                push @errors, "line $ln: TYPE of $n after its samples" if @{ $fam{$n}{samples} };
                $fam{$n}{type} = $type;
                $enter->($n, $ln);
            }
            next;                                   # another comment
        }
        unless ($line =~ /\A[ \t]*($NAME)(\{[^\n]*\})?[ \t]+($FLOAT)(?:[ \t]+(-?\d+))?[ \t]*\z/) {
            push @errors, "line $ln: not a sample: $line";
            next;
        }
        my($n, $lab, $value) = ($1, $2, $3);
        my %labels;
        if (defined $lab) {
            my $s = substr $lab, 1, -1;
            pos($s) = 0;
            my $ok = 1;
            while (pos($s) < length $s) {
                if ($s =~ /\G[ \t]*($LABEL)[ \t]*=[ \t]*"((?:[^"\\\n]|\\[\\"n])*)"[ \t]*(?:,|\z)/gc) {
                    my($k, $v) = ($1, $2);
                    push @errors, "line $ln: label $k twice" if exists $labels{$k};
                    push @errors, "line $ln: reserved label name $k" if $k =~ /\A__/;
                    $labels{$k} = unescape_label($v);
                }
                else {
                    push @errors, "line $ln: bad labels: $lab";
                    $ok = 0;
                    last;
                }
            }
            next unless $ok;
        }
        my $f = $family_of->($n);
        unless (defined $f && defined $fam{$f}{type}) {
            push @errors, "line $ln: sample $n has no TYPE line before it";
            $f //= $n;
            $fam{$f} ||= { samples => [] };
            push @order, $f unless $fam{$f}{seen}++;
        }
        $enter->($f, $ln);
        my $key = join "\0", $n, map { "$_=$labels{$_}" } sort keys %labels;
        push @errors, "line $ln: series twice: $line" if $series{$key}++;
        if (($fam{$f}{type} // '') eq 'summary' && $n eq $f) {
            if (!defined $labels{quantile} || $labels{quantile} !~ /\A$FLOAT\z/) {
                push @errors, "line $ln: a summary sample without a numeric quantile";
            }
        }
        push @{ $fam{$f}{samples} }, { name => $n, labels => \%labels,
                                        value => $value, line => $ln };
    }
    # quantiles in increasing order, per series (labels but quantile)
    for my $f (grep { ($fam{$_}{type} // '') eq 'summary' } keys %fam) {
        my %last;
        for my $s (grep { $_->{name} eq $f } @{ $fam{$f}{samples} }) {
            my %l = %{ $s->{labels} };
            my $q = delete $l{quantile} // next;
            my $k = join "\0", map { "$_=$l{$_}" } sort keys %l;
            push @errors, "line $s->{line}: quantiles of $f not increasing"
                if defined $last{$k} && $q <= $last{$k};
            $last{$k} = $q;
        }
    }
    delete @{$_}{qw(seen closed)} for values %fam;
    return { families => \%fam, order => \@order, errors => \@errors };
}

# The value of the sample NAME with exactly the labels given, or undef.
sub prom_value {
    my($parsed, $name, %labels) = @_;
    for my $fam (values %{ $parsed->{families} }) {
        for my $s (@{ $fam->{samples} }) {
            next unless $s->{name} eq $name;
            next unless keys %{ $s->{labels} } == keys %labels;
            next if grep { !defined $s->{labels}{$_} || $s->{labels}{$_} ne $labels{$_} }
                    keys %labels;
            return $s->{value};
        }
    }
    return undef;
}

# -- HTML ---------------------------------------------------------------------

# The tables of an HTML page: [ { heading => text of the nearest <h1>/<h2>
# before it, head => [th texts], rows => [[td texts]...] } ...], entities
# decoded, whitespace squeezed.
sub html_tables {
    my $html = shift;
    my $tree = HTML::TreeBuilder->new;
    $tree->ignore_unknown(0);
    $tree->parse($html);
    $tree->eof;
    my(@tables, $heading);
    my $clean = sub { my $t = shift->as_text; $t =~ s/\s+/ /g; $t =~ s/\A | \z//g; $t };
    $tree->traverse(sub {
        my($node, $start) = @_;
        return 1 unless ref $node && $start;
        my $tag = $node->tag;
        if ($tag =~ /\Ah[1-6]\z/) {
            $heading = $clean->($node);
        }
        elsif ($tag eq 'table') {
            my(@head, @rows);
            for my $tr ($node->look_down(_tag => 'tr')) {
                my @th = $tr->look_down(_tag => 'th');
                my @td = $tr->look_down(_tag => 'td');
                if (@th && !@td) { @head = map { $clean->($_) } @th }
                else { push @rows, [map { $clean->($_) } @td] }
            }
            push @tables, { heading => $heading, head => \@head, rows => \@rows };
            return 0;
        }
        return 1;
    });
    $tree->delete;
    return \@tables;
}

# -- logs -----------------------------------------------------------------------

sub read_lines {
    my($file, $from) = @_;
    open my $fh, '<', $file or return ();
    seek $fh, $from // 0, 0;
    my @l = <$fh>;
    chomp @l;
    return @l;
}

sub log_offset { my $f = shift; return -s $f // 0 }

sub lines_since {
    my($file, $offset) = @_;
    return read_lines($file, $offset);
}

# The lines of the module ([eventtrigger:LEVEL]) in these error logs whose
# message does not start with an ET tag ("ETnnnnn: "), after httpd's
# prefixes (time, module and level, pid, source file at debug levels,
# (errno)text, [client ...] or [remote ...] (HTTP/2)).
sub untagged_lines {
    my @bad;
    for my $file (@_) {
        for (read_lines($file)) {
            next unless /^\[[^\]]*\] \[eventtrigger:\w+\] /;
            (my $msg = $_) =~ s/^\[[^\]]*\] \[eventtrigger:\w+\] \[pid [^\]]*\] //;
            $msg =~ s/^\S+\.c\(\d+\): //;
            $msg =~ s/^\(\d+\)[^:]*: //;
            $msg =~ s/^\[(?:client|remote) [^\]]*\] //;
            push @bad, "$file: $_" unless $msg =~ /^ET\d{5}: \S/;
        }
    }
    return @bad;
}

# -- httpd and the built modules ------------------------------------------------

sub module_so { t_path('t_dir', '..', '.libs', 'mod_eventtrigger.so') }
sub console_so { t_path('t_dir', 'c-modules', 'et_console', '.libs', 'mod_et_console.so') }

sub httpd_bin { config()->{vars}->{httpd} || '/usr/sbin/apache2' }

sub module_dir {
    my $apxs = eval { config()->apxs('LIBEXECDIR') };
    for my $d ($apxs, '/usr/lib/apache2/modules') {
        next unless $d;
        return $d if -e "$d/mod_mpm_event.so" || -e "$d/mod_mpm_prefork.so";
    }
    return '/usr/lib/apache2/modules';
}

# LoadModule lines for an MPM, unless httpd has one built in.
sub mpm_load_lines {
    my $bin = httpd_bin();
    my $compiled = `$bin -l 2>/dev/null` // '';
    return '' if $compiled =~ /\b(?:event|worker|prefork)\.c\b/;
    my $dir = module_dir();
    for my $mpm (qw(event worker prefork)) {
        return "LoadModule mpm_${mpm}_module $dir/mod_mpm_$mpm.so\n"
            if -e "$dir/mod_mpm_$mpm.so";
    }
    return '';
}

# apache2_run(ARGS...) -> (exit status, combined stdout+stderr)
sub apache2_run {
    my @argv = (httpd_bin(), @_);
    my $pid = open my $fh, '-|' // die "fork: $!";
    unless ($pid) {
        open STDERR, '>&', \*STDOUT;
        exec @argv or POSIX::_exit(127);
    }
    local $/;
    my $out = <$fh> // '';
    close $fh;
    return ($? >> 8, $out);
}

# mini_httpd_conf(DIR, [PORTS], TEXT) -> path of DIR/httpd.conf: a standalone
# httpd (not Apache::Test's) that listens on PORTS, logs to DIR/logs and loads
# the built module and the in-process console; TEXT follows (the outbox, the
# sites, the locations).
sub mini_httpd_conf {
    my($dir, $ports, $text) = @_;
    my $conf = "$dir/httpd.conf";
    open my $fh, '>', $conf or die "$conf: $!";
    print $fh mpm_load_lines(), qq(ServerRoot "$dir"\nServerName 127.0.0.1\n),
        (map { "Listen 127.0.0.1:$_\n" } @$ports), <<"EOF", $text;
PidFile "$dir/logs/httpd.pid"
DefaultRuntimeDir "$dir/logs"
ErrorLog "$dir/logs/error_log"
StartServers 1
LoadModule authz_core_module "@{[module_dir()]}/mod_authz_core.so"
LoadModule eventtrigger_module "@{[module_so()]}"
LoadModule et_console_module "@{[console_so()]}"
EOF
    close $fh or die "$conf: $!";
    return $conf;
}

# mini_httpd_start(CONF) -> pid: httpd in the foreground on a configuration
# file of the test's own; waits until PORT answers.
sub mini_httpd_start {
    my($conf, $port, $out) = @_;
    my $pid = fork // die "fork: $!";
    unless ($pid) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>>', $out or POSIX::_exit(126);
        open STDERR, '>&', \*STDOUT;
        exec httpd_bin(), '-f', $conf, '-DFOREGROUND' or POSIX::_exit(127);
    }
    # Up once its PidFile names it: the port alone answers from the moment
    # httpd binds it, before the modules' post_config (the outbox made);
    # a test that stopped it then would stop a half-started httpd.
    (my $pidfile = $conf) =~ s{/[^/]*\z}{/logs/httpd.pid};
    my $up = wait_for(sub {
        return 'died' if waitpid($pid, WNOHANG) == $pid;
        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port,
                                      Proto => 'tcp', Timeout => 1);
        return 0 unless $s;
        open my $fh, '<', $pidfile or return 0;
        my $named = <$fh> // '';
        return $named =~ /^\s*$pid\b/ ? 'up' : 0;
    }, 30);
    die "httpd on $conf did not start (see $out)\n" unless $up && $up eq 'up';
    return $pid;
}

# A standalone httpd's in-process console (t/c-modules/et_console), its
# members mapped: the <Location> blocks for mini_httpd_conf's text.
use constant MINI_CONSOLE => <<'END';
<Location /inproc/>
    SetHandler et-console
</Location>
<Location /inproc/member>
    EventTrigger member
</Location>
END

# mini_proxy_lines() -> the LoadModule lines of mod_proxy and
# mod_proxy_http, for a mini_httpd_conf text whose console is proxied.
sub mini_proxy_lines {
    my $mods = module_dir();
    return "LoadModule proxy_module $mods/mod_proxy.so\n"
        . "LoadModule proxy_http_module $mods/mod_proxy_http.so\n";
}

# recording_console(PORT, RECORD, OUT) -> its process (ETTest::spawn):
# the console behind mod_proxy (t/bin/console.py) on PORT, every request
# it saw a JSON line of RECORD - what the fail-closed tests compare with
# the events stored and delivered. Its output goes to OUT.
sub recording_console {
    my($port, $record, $out) = @_;
    return ETTest::spawn(
        name => 'console', port => $port, out => $out,
        argv => [ETTest::python(), t_path('t_dir', 'bin', 'console.py'),
                 '--port', $port, '--quiet', '--record', $record]);
}

# mini_post_members(PORT, IDS...) -> how many the console saved (2xx), one
# POST each, one after the other.
sub mini_post_members {
    my($port, @ids) = @_;
    require LWP::UserAgent;
    my $ua = LWP::UserAgent->new(timeout => 10);
    return scalar grep {
        $ua->post("http://127.0.0.1:$port/inproc/member",
                  'Content-Type' => 'application/json',
                  Content => qq({"id":"$_"}))->is_success
    } @ids;
}

# mini_wait_delivered(DB, SECONDS, COLUMNS, IDS...) -> (done, rows): waits
# until the events of these member ids in the SQLite outbox DB are all
# delivered; rows (oid, state and COLUMNS) as last read.
sub mini_wait_delivered {
    my($db, $secs, $cols, @ids) = @_;
    my $in = join ',', map { "'$_'" } @ids;
    my $rows;
    my $done = wait_for(sub {
        $rows = sqlite_rows($db, "SELECT oid, state$cols FROM et_event WHERE oid IN ($in)");
        @$rows == @ids && !grep { $_->{state} != 1 } @$rows;
    }, $secs);
    return ($done, $rows);
}

sub mini_httpd_stop {
    my $pid = shift or return;
    kill TERM => $pid;
    my $gone = wait_for(sub { waitpid($pid, WNOHANG) == $pid }, 20);
    unless ($gone) {
        kill KILL => $pid;
        waitpid $pid, 0;
    }
}

# Chromium: $ET_CHROMIUM if set (a path; anything not executable means
# none), else chromium or chromium-browser on the PATH.
sub find_chromium {
    if (exists $ENV{ET_CHROMIUM}) {
        return -x $ENV{ET_CHROMIUM} && !-d _ ? $ENV{ET_CHROMIUM} : undef;
    }
    for my $name (qw(chromium chromium-browser)) {
        for my $dir (split(/:/, $ENV{PATH} // ''), '/usr/bin') {
            return "$dir/$name" if -x "$dir/$name" && !-d _;
        }
    }
    return undef;
}

# Rows of a SELECT on an SQLite file (sqlite3 CLI), as hashrefs.
sub sqlite_rows {
    my($file, $sql) = @_;
    open my $fh, '-|', 'sqlite3', '-json', '-cmd', '.timeout 5000', $file, $sql
        or die "cannot run sqlite3 ($!): install sqlite3\n";
    local $/;
    my $out = <$fh>;
    close $fh;
    return [] unless defined $out && $out =~ /\S/;
    return $JSON->decode($out);
}

1;
