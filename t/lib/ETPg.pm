package ETPg;
# A private PostgreSQL server for one test file (initdb and pg_ctl in the
# file's t/tmp directory, on a port of its own, trust authentication for
# the role "et"), as .ci/run starts one for the unit tests: what
# store_pgsql.t, store_spool.t and multi_pgsql.t share.
use strict;
use warnings;

use Exporter 'import';
use File::Path qw(make_path);

our @EXPORT_OK = qw(pg_skip_reason pg_init pg_start pg_stop psql);
our %EXPORT_TAGS = (all => \@EXPORT_OK);

my($BIN) = reverse sort glob '/usr/lib/postgresql/*/bin';
my($DIR, $PORT, $UP);

# Why the file cannot run here (for plan skip_all), or undef.
sub pg_skip_reason {
    return 'PostgreSQL is not installed (apt-get install postgresql)'
        unless $BIN && -x "$BIN/initdb" && -x "$BIN/pg_ctl";
    return "APR-util's pgsql driver is not installed "
         . '(apt-get install libaprutil1-dbd-pgsql)'
        unless grep { -e } glob('/usr/lib/*/apr-util-1/apr_dbd_pgsql*.so'),
                           glob('/usr/lib/apr-util-1/apr_dbd_pgsql*.so');
    return 'initdb refuses to run as root' if $> == 0;
    return undef;
}

sub pg_ctl {
    my $args = shift;
    system("'$BIN/pg_ctl' -D '$DIR/data' -l '$DIR/log' -w $args "
           . ">>'$DIR/ctl.out' 2>&1") == 0;
}

# A new cluster in DIR (its data, log and socket), listening on
# 127.0.0.1:PORT; stopped when the test file ends.
sub pg_init {
    ($DIR, $PORT) = @_;
    make_path($DIR);
    system("'$BIN/initdb' -D '$DIR/data' -A trust -U et "
           . ">'$DIR/initdb.out' 2>&1") == 0
        or die "initdb failed (see $DIR/initdb.out)\n";
    pg_start();
}

sub pg_start {
    pg_ctl("-o '-p $PORT -k $DIR -c listen_addresses=127.0.0.1' start")
        or die "cannot start PostgreSQL (see $DIR/log)\n";
    $UP = 1;
}

# pg_stop('fast' | 'immediate' ...): pg_ctl's shutdown mode
sub pg_stop {
    my $mode = shift // 'fast';
    $UP = 0;
    return pg_ctl("-m $mode stop");
}

END { pg_ctl('-m immediate stop') if $UP }

# The rows of one statement in database postgres, as text lines.
sub psql {
    my $sql = shift;
    open my $fh, '-|', 'psql', '-h', '127.0.0.1', '-p', $PORT, '-U', 'et',
        '-d', 'postgres', '-Atc', $sql or die "psql: $!";
    my @rows = map { chomp; $_ } <$fh>;
    close $fh;
    return @rows;
}

1;
