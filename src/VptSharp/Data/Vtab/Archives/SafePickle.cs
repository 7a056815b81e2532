using System.Text;

namespace VptSharp.Data.Vtab.Archives;

/// <summary>A call the pickle asked for (a GLOBAL applied with REDUCE / NEWOBJ), recorded instead of executed;
/// <see cref="State"/> is what BUILD gave it.</summary>
public sealed class PickleCall(string target, object?[] args)
{
    public string Target { get; } = target;
    public object?[] Args { get; } = args;
    public object? State { get; set; }
}

/// <summary>A numpy array rebuilt from its pickled form: dtype string (e.g. "|u1", "&lt;i8"), shape and raw bytes (C order).</summary>
public sealed record PickledArray(string DType, long[] Shape, byte[] Data);

/// <summary>
/// Reads Python pickles (protocols 0–5 binary opcodes) without executing anything: the only code references accepted
/// are numpy's array reconstruction (numpy.core.multiarray._reconstruct / numpy._core…, numpy.ndarray, numpy.dtype),
/// which are interpreted, never called; any other GLOBAL is refused. Enough for CIFAR's python batches: dicts of
/// str/bytes keys, lists of ints and str, and uint8 arrays.
/// </summary>
public static class SafePickle
{
    static readonly HashSet<string> AllowedGlobals =
    [
        "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct", "numpy.ndarray", "numpy.dtype",
    ];

    sealed class Mark;
    static readonly Mark MarkObject = new();

    public static object? Load(byte[] data, string name)
    {
        try { return Run(data, name); }
        catch (Exception e) when (e is IndexOutOfRangeException or ArgumentOutOfRangeException or InvalidCastException or InvalidOperationException or KeyNotFoundException)
        {
            throw new InvalidDataException($"{name}: not a readable pickle ({e.GetType().Name}); the file is corrupt or not a CIFAR python batch");
        }
    }

    static object? Run(byte[] d, string name)
    {
        var stack = new List<object?>();
        var memo = new Dictionary<long, object?>();
        int pos = 0;
        int U8() => d[pos++];
        int I32() { int v = BitConverter.ToInt32(d, pos); pos += 4; return v; }
        byte[] Take(long n) { if (n < 0 || pos + n > d.Length) throw new InvalidDataException($"{name}: truncated pickle"); var b = d.AsSpan(pos, (int)n).ToArray(); pos += (int)n; return b; }
        string Line() { int e = Array.IndexOf(d, (byte)'\n', pos); var s = Encoding.ASCII.GetString(d, pos, e - pos); pos = e + 1; return s; }
        object? Pop() { var v = stack[^1]; stack.RemoveAt(stack.Count - 1); return v; }
        List<object?> PopMark()
        {
            int m = stack.FindLastIndex(x => ReferenceEquals(x, MarkObject));
            if (m < 0) throw new InvalidDataException($"{name}: pickle MARK missing");
            var items = stack.GetRange(m + 1, stack.Count - m - 1);
            stack.RemoveRange(m, stack.Count - m);
            return items;
        }
        object Global(string module, string attr)
        {
            string target = module + "." + attr;
            if (!AllowedGlobals.Contains(target))
                throw new InvalidDataException($"{name}: the pickle references {target}; only numpy arrays are read (nothing in a pickle is executed), so this is not a CIFAR batch");
            return target;
        }
        while (true)
        {
            if (pos >= d.Length) throw new InvalidDataException($"{name}: truncated pickle (no STOP)");
            byte op = d[pos++];
            switch (op)
            {
                case 0x80: pos++; break;                                // PROTO
                case 0x95: pos += 8; break;                             // FRAME
                case (byte)'.': return stack.Count > 0 ? Pop() : null;  // STOP
                case (byte)'(': stack.Add(MarkObject); break;
                case (byte)'}': stack.Add(new Dictionary<object, object?>()); break;
                case (byte)']': stack.Add(new List<object?>()); break;
                case (byte)')': stack.Add(Array.Empty<object?>()); break;
                case (byte)'t': stack.Add(PopMark().ToArray()); break;
                case 0x85: stack.Add(new[] { Pop() }); break;
                case 0x86: { var b = Pop(); var a = Pop(); stack.Add(new[] { a, b }); break; }
                case 0x87: { var c = Pop(); var b = Pop(); var a = Pop(); stack.Add(new[] { a, b, c }); break; }
                case (byte)'q': memo[U8()] = stack[^1]; break;          // BINPUT
                case (byte)'r': memo[(uint)I32()] = stack[^1]; break;   // LONG_BINPUT
                case 0x94: memo[memo.Count] = stack[^1]; break;         // MEMOIZE
                case (byte)'h': stack.Add(memo[U8()]); break;           // BINGET
                case (byte)'j': stack.Add(memo[(uint)I32()]); break;    // LONG_BINGET
                case (byte)'J': stack.Add((long)I32()); break;          // BININT
                case (byte)'K': stack.Add((long)U8()); break;           // BININT1
                case (byte)'M': { long v = BitConverter.ToUInt16(d, pos); pos += 2; stack.Add(v); break; } // BININT2
                case 0x8a:                                              // LONG1
                {
                    int n = U8(); long v = 0;
                    for (int i = n - 1; i >= 0; i--) v = (v << 8) | d[pos + i];
                    if (n > 0 && n < 8 && (d[pos + n - 1] & 0x80) != 0) v -= 1L << (8 * n);
                    pos += n; stack.Add(v); break;
                }
                case (byte)'N': stack.Add(null); break;
                case 0x88: stack.Add(true); break;
                case 0x89: stack.Add(false); break;
                case (byte)'G': { var b = Take(8); Array.Reverse(b); stack.Add(BitConverter.ToDouble(b)); break; } // BINFLOAT (big-endian)
                case (byte)'U': stack.Add(Take(U8())); break;           // SHORT_BINSTRING (py2 str: bytes)
                case (byte)'T': stack.Add(Take((uint)I32())); break;    // BINSTRING
                case (byte)'C': stack.Add(Take(U8())); break;           // SHORT_BINBYTES
                case (byte)'B': stack.Add(Take((uint)I32())); break;    // BINBYTES
                case 0x8e: { long n = BitConverter.ToInt64(d, pos); pos += 8; stack.Add(Take(n)); break; } // BINBYTES8
                case 0x8c: stack.Add(Encoding.UTF8.GetString(Take(U8()))); break;        // SHORT_BINUNICODE
                case (byte)'X': stack.Add(Encoding.UTF8.GetString(Take((uint)I32()))); break; // BINUNICODE
                case 0x8d: { long n = BitConverter.ToInt64(d, pos); pos += 8; stack.Add(Encoding.UTF8.GetString(Take(n))); break; }
                case (byte)'a': { var v = Pop(); ((List<object?>)stack[^1]!).Add(v); break; }
                case (byte)'e': { var items = PopMark(); ((List<object?>)stack[^1]!).AddRange(items); break; }
                case (byte)'s': { var v = Pop(); var k = Pop()!; ((Dictionary<object, object?>)stack[^1]!)[Key(k)] = v; break; }
                case (byte)'u':
                {
                    var items = PopMark();
                    var dict = (Dictionary<object, object?>)stack[^1]!;
                    for (int i = 0; i + 1 < items.Count; i += 2) dict[Key(items[i]!)] = items[i + 1];
                    break;
                }
                case (byte)'c': { string module = Line(), attr = Line(); stack.Add(Global(module, attr)); break; }
                case 0x93: { var attr = (string)Pop()!; var module = (string)Pop()!; stack.Add(Global(module, attr)); break; } // STACK_GLOBAL
                case (byte)'R': case 0x81:                              // REDUCE, NEWOBJ
                {
                    var args = (object?[])Pop()!;
                    var target = (string)Pop()!;
                    stack.Add(new PickleCall(target, args));
                    break;
                }
                case (byte)'b': { var state = Pop(); ((PickleCall)stack[^1]!).State = state; break; } // BUILD
                default:
                    throw new InvalidDataException($"{name}: pickle opcode 0x{op:x2} at byte {pos - 1} is not supported (only data opcodes are read)");
            }
        }
    }

    /// <summary>Dictionary keys: py2 str arrives as bytes; compare them as text.</summary>
    static object Key(object k) => k is byte[] b ? Encoding.Latin1.GetString(b) : k;

    /// <summary>The numpy array a pickled ndarray describes (its BUILD state: version, shape, dtype, fortran order, raw bytes).</summary>
    public static PickledArray NumpyArray(object? value, string name)
    {
        if (value is not PickleCall { Target: "numpy.core.multiarray._reconstruct" or "numpy._core.multiarray._reconstruct", State: object?[] state } || state.Length < 5)
            throw new InvalidDataException($"{name}: expected a numpy array");
        var shape = ((object?[])state[1]!).Select(x => (long)x!).ToArray();
        if (state[2] is not PickleCall { Target: "numpy.dtype", Args: [object kind, ..], State: object?[] dtState })
            throw new InvalidDataException($"{name}: numpy array without a dtype");
        string order = dtState.Length > 1 ? Text(dtState[1]) : "|";
        if ((bool)state[3]! && shape.Length > 1) throw new InvalidDataException($"{name}: Fortran-ordered arrays are not supported");
        byte[] raw = state[4] switch { byte[] b => b, string s => Encoding.Latin1.GetBytes(s), _ => throw new InvalidDataException($"{name}: array data missing") };
        return new PickledArray(order + Text(kind), shape, raw);
    }

    static string Text(object? v) => v switch { string s => s, byte[] b => Encoding.Latin1.GetString(b), _ => "" };
}
