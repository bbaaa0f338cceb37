#pragma once
/// All the autograd's operations, one file each (conventions in common.hpp): include this, or
/// just the op a caller needs.

#include "cluscomp/autograd/attention.hpp"
#include "cluscomp/autograd/common.hpp"
#include "cluscomp/autograd/dense_linear.hpp"
#include "cluscomp/autograd/embedding.hpp"
#include "cluscomp/autograd/lookup_linear.hpp"
#include "cluscomp/autograd/residual_add.hpp"
#include "cluscomp/autograd/rms_norm.hpp"
#include "cluscomp/autograd/rope.hpp"
#include "cluscomp/autograd/swiglu.hpp"
